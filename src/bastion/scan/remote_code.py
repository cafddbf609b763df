"""The switches in model configs that make a loader import Python code shipped with the model
(or with another repository), read from transformers' own loaders:

- `auto_map` in config.json, tokenizer_config.json, processor/preprocessor/feature-extractor/
  video-processor configs: a dict of Auto class -> "module.Class" (or "repo--module.Class", code
  from another repository); a tokenizer's value may be a [slow, fast] list, an image processor's
  a {backend: ref} dict, and an old tokenizer_config.json gives the list itself
  (tokenization_auto.py: `isinstance(tokenizer_config["auto_map"], (tuple, list))`);
- `custom_pipelines` in config.json: task -> {"impl": "module.Class", ...} (pipelines/__init__.py);
- `trust_remote_code: true` stored anywhere in a config (sentence-transformers' model_kwargs,
  kernel configs): a consumer that forwards it runs the repository's code;
- sentence-transformers `modules.json`: each module's `type` is imported by name.
Each is reported where it is; the code itself is Python that `bastion scan` checks as code."""

from __future__ import annotations

from bastion.findings import Confidence, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule
from bastion.scan.config_values import keys_in

REMOTE_CODE = Rule(
    id="HFC001",
    title="Model config requires remote code",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The config makes the loader import Python code shipped with the model or "
    "with another repository (transformers auto_map in any form, custom_pipelines, "
    "a stored trust_remote_code, sentence-transformers module types). Loading it "
    "with trust_remote_code=True runs that code.",
    remediation="Review the referenced Python files, pin a revision, or use a model that needs "
    "no remote code.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (REMOTE_CODE,)

_SWITCH_KEYS = ("auto_map", "custom_pipelines", "trust_remote_code")


class Switch(Record):
    pointer: str
    message: str
    evidence: str


def _refs(value: object) -> list[str]:
    """The class references an auto_map value names, whatever its form."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in _refs(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs(item)]
    return []


def _describe(refs: list[str]) -> str:
    shown = sorted(set(refs))[:5]
    other = [ref.split("--", 1)[0] for ref in shown if "--" in ref]
    text = ", ".join(shown) or "(no class named)"
    if other:
        text += f" (code from another repository: {', '.join(sorted(set(other)))})"
    return text


def remote_code_switches(config: object, name: str) -> list[Switch]:
    found: list[Switch] = []
    for path, key, value in keys_in(config, _SWITCH_KEYS):
        if key == "auto_map" and value:
            form = "list" if isinstance(value, list) else type(value).__name__
            found.append(
                Switch(
                    pointer=path,
                    message=f"auto_map ({form} form) points at Python code shipped "
                    f"with the model: {_describe(_refs(value))}",
                    evidence=",".join(sorted(set(_refs(value))))[:300] or path,
                )
            )
        elif key == "custom_pipelines" and value:
            impls = (
                [
                    str(task.get("impl"))
                    for task in value.values()
                    if isinstance(task, dict) and task.get("impl")
                ]
                if isinstance(value, dict)
                else []
            )
            found.append(
                Switch(
                    pointer=path,
                    message="custom_pipelines registers pipeline code shipped with "
                    f"the model: {_describe(impls)}",
                    evidence=",".join(sorted(impls))[:300] or path,
                )
            )
        elif key == "trust_remote_code" and value not in (False, None, 0, "", "false", "False"):
            found.append(
                Switch(
                    pointer=path,
                    message=f"the config stores trust_remote_code={value!r}; a "
                    "consumer that forwards it runs the repository's code",
                    evidence=f"{path}={value!r}"[:300],
                )
            )
    base = name.rsplit("/", 1)[-1].lower()
    if base == "modules.json" and isinstance(config, list):
        found += _sentence_transformer_modules(config)
    return found


def _sentence_transformer_modules(modules: list[object]) -> list[Switch]:
    out = []
    for index, module in enumerate(modules[:1000]):
        if isinstance(module, dict) and isinstance(module.get("type"), str):
            kind = module["type"]
            if not kind.startswith("sentence_transformers."):
                out.append(
                    Switch(
                        pointer=f"[{index}].type",
                        message="sentence-transformers imports module "
                        f"type '{kind[:120]}', which is not part of the library "
                        "(code shipped with the model)",
                        evidence=kind[:300],
                    )
                )
    return out
