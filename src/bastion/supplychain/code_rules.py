"""Rules of `bastion code`: unsafe loading, remote code, weak transport, secrets and personal
data in training code and notebooks."""

from __future__ import annotations

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule

TORCH_LOAD = Rule(
    id="COD001",
    title="torch.load without weights_only=True",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="torch.load unpickles the checkpoint; unless weights_only=True it runs any code "
    "the file carries (and weights_only=False is explicit consent to do so).",
    remediation="Pass weights_only=True (default since torch 2.6), or use safetensors; load "
    "untrusted files only through bastion.safe_load.",
)
PICKLE_LOAD = Rule(
    id="COD002",
    title="Deserialising with pickle, joblib, dill or cloudpickle",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="pickle-family loaders execute code embedded in the data. Loading a model or "
    "dataset from anywhere but your own trusted store is remote code execution.",
    remediation="Use a data-only format (safetensors, ONNX, skops, parquet), or scan the file "
    "first and load it with bastion.safe_load.",
)
NUMPY_PICKLE = Rule(
    id="COD003",
    title="np.load with allow_pickle=True",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="allow_pickle=True lets np.load unpickle object arrays, i.e. run code from the "
    "file.",
    remediation="Keep allow_pickle=False (the default) and store numeric arrays only.",
)
KERAS_UNSAFE = Rule(
    id="COD004",
    title="Keras load_model with safe_mode=False",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="safe_mode=False lets Keras deserialise Lambda layers, i.e. run marshalled "
    "Python bytecode from the model file.",
    remediation="Keep safe_mode=True; replace Lambda layers by registered custom layers.",
)
REMOTE_CODE = Rule(
    id="COD005",
    title="trust_remote_code=True",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="trust_remote_code=True imports and runs Python files from the model "
    "repository at load time.",
    remediation="Use a model supported natively by the library, or pin a reviewed revision "
    "(revision=<commit sha>) and vendor its code.",
)
YAML_LOAD = Rule(
    id="COD006",
    title="yaml.load without a safe loader",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="yaml.load with the default, Full or Unsafe loader can construct arbitrary "
    "Python objects from configuration files.",
    remediation="Use yaml.safe_load or Loader=yaml.SafeLoader.",
)
EVAL_EXEC = Rule(
    id="COD007",
    title="eval or exec",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="eval/exec run strings as code; fed from configs, prompts or model outputs they "
    "are code injection.",
    remediation="Parse data with ast.literal_eval or json, or dispatch through an explicit table.",
)
INSECURE_DOWNLOAD = Rule(
    id="COD008",
    title="Model or data download without transport security",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.CODE,
    profile="model-integrity",
    description="A download over plain http:// or with TLS verification turned off can be "
    "replaced in transit by a poisoned model or dataset.",
    remediation="Use https with verification on, and verify a pinned hash or signature.",
)
SECRET = Rule(
    id="COD009",
    title="Secret in source or notebook",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.CODE,
    profile="secrets-and-personal-data",
    description="A credential (cloud key, token, private key, password) is committed in code, a "
    "notebook cell or its output.",
    remediation="Revoke it, remove it from history, and read credentials from the environment "
    "or a secret manager.",
)
PERSONAL_DATA = Rule(
    id="COD010",
    title="Personal data in notebook output",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="secrets-and-personal-data",
    description="A notebook's stored output shows e-mail addresses, phone numbers, payment "
    "card or IBAN numbers: training data leaks with the notebook.",
    remediation="Clear outputs before committing (nbstripout) and mask personal data in "
    "exploratory output.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (
    TORCH_LOAD,
    PICKLE_LOAD,
    NUMPY_PICKLE,
    KERAS_UNSAFE,
    REMOTE_CODE,
    YAML_LOAD,
    EVAL_EXEC,
    INSECURE_DOWNLOAD,
    SECRET,
    PERSONAL_DATA,
)
