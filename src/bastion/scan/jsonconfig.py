"""JSON configs next to models: Hugging Face tokenizer/model configs (chat templates, remote
code) and Keras configs found outside a .keras archive."""

from __future__ import annotations

import json
from typing import Any

from bastion.findings import OUT_OF_SCOPE, Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.source import Source
from bastion.scan.templates import template_findings

REMOTE_CODE = Rule(
    id="HFC001", title="Model config requires remote code", severity=Severity.MEDIUM,
    confidence=Confidence.HIGH, stage=Stage.ARTIFACT, profile="model-code-execution",
    description="The config maps model classes to Python files shipped with the model "
                "(auto_map). Loading it with trust_remote_code=True imports and runs that code.",
    remediation="Review the referenced Python files, pin a revision, or use a model that needs "
                "no remote code.",
)


def parse_json(data: bytes) -> tuple[Any, list[str]]:
    """json.loads, and the keys that an object repeats (the last one wins in most loaders)."""
    duplicates: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out and len(duplicates) < 16:
                duplicates.append(key)
            out[key] = value
        return out

    value = json.loads(data.decode("utf-8-sig"), object_pairs_hook=hook)
    return value, duplicates


class JsonConfigScanner:
    name = "json"
    formats = ("json",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        data = source.read_all(ctx.limits.max_metadata, "JSON config")
        try:
            config, _duplicates = parse_json(data)
        except (ValueError, RecursionError) as exc:
            if source.name.endswith(".json"):
                ctx.add(MALFORMED.finding(source.location, f"invalid JSON: {exc}",
                                          evidence=str(exc)[:200], severity=Severity.LOW))
            else:
                ctx.skip(source.location, "text that is not JSON", OUT_OF_SCOPE)
            return
        if not isinstance(config, dict):
            return
        for name, template in chat_templates(config):
            for finding in template_findings(
                    source.location.model_copy(update={"pointer": name}), template,
                    "chat template"):
                ctx.add(finding)
        auto_map = config.get("auto_map")
        if isinstance(auto_map, dict) and auto_map:
            refs = sorted(str(v) for v in auto_map.values())[:5]
            ctx.add(REMOTE_CODE.finding(source.location, "auto_map points at Python code "
                                        f"shipped with the model: {', '.join(refs)}",
                                        evidence=",".join(refs)))
        if "class_name" in config and ("config" in config or "module" in config):
            from bastion.scan.keras import analyse_keras_config

            analyse_keras_config(ctx, source.location, config)


def chat_templates(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, template) for `chat_template` given as a string or as a list of named ones."""
    value = config.get("chat_template")
    if isinstance(value, str):
        return [("chat_template", value)]
    out = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                out.append((f"chat_template[{item.get('name', '?')}]", item["template"]))
    return out
