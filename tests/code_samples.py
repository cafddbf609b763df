"""Labelled snippets of real-world-shaped ML code for `bastion code`: (name, source, the rule ids
that must be reported). Used by the tests (precision/recall) and bench/code_detection.py (against
bandit)."""

from __future__ import annotations

SNIPPETS: list[tuple[str, str, set[str]]] = [
    # --- torch.load ---------------------------------------------------------------------------
    ("torch_load_plain", "import torch\nmodel = torch.load('ckpt.pt')\n", {"COD001"}),
    (
        "torch_load_alias",
        "import torch as T\nstate = T.load(path, map_location='cpu')\n",
        {"COD001"},
    ),
    ("torch_load_from_import", "from torch import load\nsd = load(f)\n", {"COD001"}),
    (
        "torch_load_weights_false",
        "import torch\nm = torch.load('m.pt', weights_only=False)\n",
        {"COD001"},
    ),
    (
        "torch_load_serialization",
        "import torch.serialization\nx = torch.serialization.load(p)\n",
        {"COD001"},
    ),
    ("torch_load_safe", "import torch\nsd = torch.load('m.pt', weights_only=True)\n", set()),
    (
        "torch_load_safe_kw_order",
        "import torch\nsd = torch.load(f, map_location='cpu', weights_only=True)\n",
        set(),
    ),
    ("torch_save_only", "import torch\ntorch.save(model.state_dict(), 'm.pt')\n", set()),
    (
        "local_load_function",
        "def load(path):\n    return open(path).read()\n\nconfig = load('c.txt')\n",
        set(),
    ),
    # --- pickle family ---------------------------------------------------------------------------
    (
        "pickle_load",
        "import pickle\nwith open('m.pkl', 'rb') as f:\n    clf = pickle.load(f)\n",
        {"COD002"},
    ),
    ("pickle_loads", "import pickle\nobj = pickle.loads(blob)\n", {"COD002"}),
    ("cpickle_alias", "import pickle as pkl\nmodel = pkl.load(open(p, 'rb'))\n", {"COD002"}),
    ("joblib_load", "import joblib\npipe = joblib.load('pipeline.joblib')\n", {"COD002"}),
    ("joblib_from_import", "from joblib import load\nclf = load('clf.joblib')\n", {"COD002"}),
    ("dill_load", "import dill\nfn = dill.load(open('fn.dill', 'rb'))\n", {"COD002"}),
    ("cloudpickle_loads", "import cloudpickle\nf = cloudpickle.loads(payload)\n", {"COD002"}),
    (
        "pandas_read_pickle",
        "import pandas as pd\ndf = pd.read_pickle('features.pkl')\n",
        {"COD002"},
    ),
    ("unpickler_class", "import pickle\nobj = pickle.Unpickler(fh).load()\n", {"COD002"}),
    ("pickle_dump_only", "import pickle\npickle.dump(model, open('m.pkl', 'wb'))\n", set()),
    ("joblib_dump_only", "import joblib\njoblib.dump(clf, 'clf.joblib', compress=3)\n", set()),
    ("json_loads", "import json\ncfg = json.loads(text)\n", set()),
    # --- numpy ----------------------------------------------------------------------------------
    (
        "np_allow_pickle",
        "import numpy as np\nemb = np.load('emb.npy', allow_pickle=True)\n",
        {"COD003"},
    ),
    ("numpy_allow_pickle_full", "import numpy\nx = numpy.load(p, allow_pickle=True)\n", {"COD003"}),
    ("np_load_default", "import numpy as np\nemb = np.load('emb.npy')\n", set()),
    ("np_load_false", "import numpy as np\nx = np.load(p, allow_pickle=False)\n", set()),
    # --- keras ----------------------------------------------------------------------------------
    (
        "keras_unsafe",
        "import keras\nm = keras.models.load_model('m.keras', safe_mode=False)\n",
        {"COD004"},
    ),
    (
        "tf_keras_unsafe",
        "import tensorflow as tf\nm = tf.keras.models.load_model('m.keras', safe_mode=False)\n",
        {"COD004"},
    ),
    ("keras_safe", "import keras\nm = keras.models.load_model('m.keras')\n", set()),
    # --- remote code ----------------------------------------------------------------------------
    (
        "trust_remote_code",
        "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/m', "
        "trust_remote_code=True)\n",
        {"COD005"},
    ),
    (
        "trust_remote_code_tokenizer",
        "from transformers import AutoTokenizer\ntok = AutoTokenizer.from_pretrained(\n    'org/m',"
        "\n    revision='main',\n    trust_remote_code=True,\n)\n",
        {"COD005"},
    ),
    (
        "trust_remote_code_pipeline",
        "from transformers import pipeline\np = pipeline('text-generation', model='org/m', "
        "trust_remote_code=True)\n",
        {"COD005"},
    ),
    (
        "trust_remote_code_false",
        "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/m', "
        "trust_remote_code=False)\n",
        set(),
    ),
    # --- yaml -----------------------------------------------------------------------------------
    ("yaml_load_default", "import yaml\ncfg = yaml.load(open('cfg.yaml'))\n", {"COD006"}),
    ("yaml_load_full", "import yaml\ncfg = yaml.load(f, Loader=yaml.FullLoader)\n", {"COD006"}),
    ("yaml_load_unsafe_positional", "import yaml\ncfg = yaml.load(f, yaml.Loader)\n", {"COD006"}),
    ("yaml_unsafe_load", "import yaml\ncfg = yaml.unsafe_load(text)\n", {"COD006"}),
    ("yaml_safe_load", "import yaml\ncfg = yaml.safe_load(open('cfg.yaml'))\n", set()),
    ("yaml_load_safe_loader", "import yaml\ncfg = yaml.load(f, Loader=yaml.SafeLoader)\n", set()),
    # --- eval / exec ----------------------------------------------------------------------------
    ("eval_config", "expr = cfg['transform']\nfn = eval(expr)\n", {"COD007"}),
    ("exec_code", "exec(open('plugin.py').read())\n", {"COD007"}),
    ("literal_eval", "import ast\nvalue = ast.literal_eval(text)\n", set()),
    ("model_eval_method", "model.eval()\nwith torch.no_grad():\n    out = model(x)\n", set()),
    ("eval_in_string", "print('call eval() only in tests')\n", set()),
    # --- transport --------------------------------------------------------------------------------
    (
        "http_urlretrieve",
        "import urllib.request\nurllib.request.urlretrieve('http://mirror.example.net/model.bin', "
        "'model.bin')\n",
        {"COD008"},
    ),
    (
        "requests_verify_false",
        "import requests\nr = requests.get('https://hub.example.net/w.bin', verify=False)\n",
        {"COD008"},
    ),
    (
        "requests_http",
        "import requests\ndata = requests.get('http://data.example.net/train.csv').content\n",
        {"COD008"},
    ),
    (
        "torch_hub_http",
        "import torch\nsd = torch.hub.load_state_dict_from_url('http://x.example.net/w.pth')\n",
        {"COD008"},
    ),
    ("unverified_ssl_context", "import ssl\nctx = ssl._create_unverified_context()\n", {"COD008"}),
    (
        "check_hostname_off",
        "import ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\n",
        {"COD008"},
    ),
    (
        "requests_https",
        "import requests\nr = requests.get('https://hub.example.net/w.bin', timeout=30)\n",
        set(),
    ),
    (
        "localhost_http",
        "import requests\nr = requests.get('http://localhost:8080/health')\n",
        set(),
    ),
    (
        "http_in_docstring",
        'def f():\n    """See http://example.net for details."""\n    return 1\n',
        set(),
    ),
    # --- secrets ----------------------------------------------------------------------------------
    ("aws_key", "AWS_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLF'\n", {"COD009"}),
    ("github_token", "token = 'ghp_1a2b3c4d5e6f7g8h9i0jklmnopqrstuvwxyzAB'\n", {"COD009"}),
    ("password_assignment", "db_password = 'Sup3rS3cr3tPassw0rd!'\n", {"COD009"}),
    (
        "private_key",
        "KEY = '''-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n"
        "-----END RSA PRIVATE KEY-----'''\n",
        {"COD009"},
    ),
    (
        "slack_webhook",
        "url = 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX'\n",
        {"COD009"},
    ),
    ("env_secret", "import os\ntoken = os.environ['HF_TOKEN']\n", set()),
    ("secret_placeholder", "api_key = os.getenv('API_KEY', '')\n", set()),
    (
        "sha256_constant",
        "EXPECTED = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n",
        set(),
    ),
    # --- combined, realistic ----------------------------------------------------------------------
    (
        "training_script",
        "import argparse\nimport torch\nimport yaml\n\n"
        "def main():\n    p = argparse.ArgumentParser()\n    p.add_argument('--ckpt')\n"
        "    args = p.parse_args()\n    cfg = yaml.safe_load(open('train.yaml'))\n"
        "    state = torch.load(args.ckpt, map_location='cpu')\n    return cfg, state\n",
        {"COD001"},
    ),
    (
        "inference_service",
        "import joblib\nfrom fastapi import FastAPI\n\napp = FastAPI()\n"
        "MODEL = joblib.load('/models/credit.joblib')\n\n@app.post('/score')\n"
        "def score(x: dict):\n"
        "    return {'p': float(MODEL.predict_proba([list(x.values())])[0][1])}\n",
        {"COD002"},
    ),
    (
        "safe_pipeline",
        "from safetensors.torch import load_file\nimport torch\n\n"
        "weights = load_file('model.safetensors')\nmodel.load_state_dict(weights)\n"
        "torch.save(model.state_dict(), 'out.pt')\n",
        set(),
    ),
]
