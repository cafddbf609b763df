"""The chat templates model publishers really ship (tests/data/chat_templates, see its README)
are not flagged: neither by the static analysis nor by the dry run, which must also finish
within its bounds for each of them. Before issue #7, 17 of them were reported critical
(`namespace()`, subscripts such as messages[loop.index0 + 1])."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import rules, scan_data

from bastion.findings import Severity
from bastion.scan.templates import analyse_template

TEMPLATES = sorted((Path(__file__).parents[1] / "data" / "chat_templates").glob("*.jinja"))
FAMILIES = (
    "Llama-3.1",
    "Llama-3.2",
    "Llama-3.3",
    "Qwen2.5",
    "Qwen3",
    "DeepSeek-R1",
    "DeepSeek-V3",
    "Mistral",
)


def test_the_real_templates_cover_the_families_the_issue_names() -> None:
    assert len(TEMPLATES) >= 8
    for family in FAMILIES:
        assert any(family in path.name for path in TEMPLATES), family


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_real_template_is_not_flagged(path: Path) -> None:
    started = time.monotonic()
    assert analyse_template(path.read_text("utf-8")) == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("path", TEMPLATES[:6], ids=lambda p: p.stem)
def test_real_template_in_every_place_a_loader_reads_it(path: Path) -> None:
    text = path.read_text("utf-8")
    for data, name in (
        (text.encode(), "chat_template.jinja"),
        (json.dumps({"chat_template": text, "bos_token": "<s>"}).encode(), "tokenizer_config.json"),
        (json.dumps({"chat_template": text}).encode(), "chat_template.json"),
        (
            json.dumps(
                {
                    "chat_template": [
                        {"name": "default", "template": text},
                        {"name": "tool_use", "template": text},
                    ]
                }
            ).encode(),
            "tokenizer_config.json",
        ),
    ):
        result = scan_data(data, name)
        assert rules(result, Severity.LOW) == set(), (name, result.findings)
        assert not result.errors and not result.incomplete
