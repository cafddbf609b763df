"""JSON configs next to models: Hugging Face model/tokenizer/processor configs (chat templates,
remote-code switches), Keras configs found outside a .keras archive, and in any of them the
payloads carried as strings and the credentials (scan/config_values.py)."""

from __future__ import annotations

import json
from typing import Any

from bastion.findings import OUT_OF_SCOPE, Severity
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.config_values import check_values, keys_in
from bastion.scan.remote_code import REMOTE_CODE, remote_code_switches
from bastion.scan.source import Source
from bastion.scan.templates import template_findings


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
                ctx.add(
                    MALFORMED.finding(
                        source.location,
                        f"invalid JSON: {exc}",
                        evidence=str(exc)[:200],
                        severity=Severity.LOW,
                    )
                )
            else:
                ctx.skip(source.location, "text that is not JSON", OUT_OF_SCOPE)
            return
        for switch in remote_code_switches(config, source.name):
            ctx.add(
                REMOTE_CODE.finding(
                    source.location.model_copy(update={"pointer": switch.pointer[:200]}),
                    switch.message,
                    evidence=switch.evidence,
                )
            )
        check_values(ctx, source, config, "config")
        tokens = special_tokens(config)
        for name, template in chat_templates(config):
            for finding in template_findings(
                source.location.model_copy(update={"pointer": name[:200]}),
                template,
                "chat template",
                tokens,
            ):
                ctx.add(finding)
        if not isinstance(config, dict):
            return
        if "class_name" in config and ("config" in config or "module" in config):
            from bastion.scan.keras import analyse_keras_config

            analyse_keras_config(ctx, source.location, config)


def chat_templates(config: object) -> list[tuple[str, str]]:
    """(pointer, template) for every `chat_template` in the config, at any depth (processor
    configs nest their parts): a string, a list of named ones ({"name", "template"}), or a dict
    of name -> template, as transformers accepts them."""
    out: list[tuple[str, str]] = []
    for path, _key, value in keys_in(config, ("chat_template",)):
        if isinstance(value, str):
            out.append((path, value))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict) and isinstance(item.get("template"), str):
                    out.append((f"{path}[{str(item.get('name', index))[:80]}]", item["template"]))
        elif isinstance(value, dict):
            for name, template in value.items():
                if isinstance(template, str):
                    out.append((f"{path}[{str(name)[:80]}]", template))
    return out


def special_tokens(config: object) -> dict[str, str]:
    """bos_token, eos_token... as transformers hands them to the template: the tokenizer
    config's strings, or the content of its AddedToken dicts."""
    out: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("_token"):
                if isinstance(value, dict):
                    value = value.get("content")
                if isinstance(value, str):
                    out[key] = value[:1000]
    return out
