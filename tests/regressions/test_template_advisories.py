"""One regression test per published chat-template advisory: model files whose Jinja2 chat
template runs code in a renderer without a sandbox, and the Jinja2 sandbox escapes that let a
template out of a sandbox that was too old. Each sample is built in code with a harmless command
and put where the affected loader reads it (GGUF metadata, tokenizer_config.json,
chat_template.jinja)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity

CMD = "echo bastion-marker"


def _gguf(path: Path, template: str, key: str = "tokenizer.chat_template") -> Path:
    gguf = pytest.importorskip("gguf")
    numpy = pytest.importorskip("numpy")
    writer = gguf.GGUFWriter(str(path), arch="qwen3")
    writer.add_name("tiny")
    writer.add_context_length(64)
    writer.add_embedding_length(4)
    writer.add_block_count(1)
    writer.add_head_count(1)
    if key == "tokenizer.chat_template":
        writer.add_chat_template(template)
    else:
        writer.add_string(key, template)
    writer.add_tensor("token_embd.weight", numpy.zeros((4, 4), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _critical_template_finding(path: Path) -> bool:
    result = scan_file(path)
    return "JIN001" in rules(result, Severity.CRITICAL) and gate_fails(result)


def test_cve_2024_34359_llama_cpp_python_gguf_template(tmp_path: Path) -> None:
    """https://github.com/abetlen/llama-cpp-python/security/advisories/GHSA-56xg-wfcc-g829 —
    llama-cpp-python rendered the GGUF chat template with an unsandboxed Environment."""
    template = (
        "{% for x in ().__class__.__base__.__subclasses__() %}"
        "{% if 'warning' in x.__name__ %}{{ x()._module.__builtins__['__import__']('os')"
        ".popen('" + CMD + "') }}{% endif %}{% endfor %}"
    )
    assert _critical_template_finding(_gguf(tmp_path / "model.gguf", template))


def test_cve_2026_5760_sglang_rerank_gguf_template(tmp_path: Path) -> None:
    """https://www.kb.cert.org/vuls/id/915947 (sgl-project/sglang#23660) — SGLang rendered a
    Qwen3 reranker GGUF's chat template unsandboxed: lipsum.__globals__['os'].popen."""
    template = (
        'The answer can only be "yes" or "no".\n{{ lipsum.__globals__["os"].popen("'
        + CMD
        + '").read() }}{% for message in messages %}{{ message["content"] }}'
        "{% endfor %}"
    )
    assert _critical_template_finding(_gguf(tmp_path / "reranker.gguf", template))


def test_named_gguf_template_is_analysed(tmp_path: Path) -> None:
    """Same advisories, payload in a named template (tokenizer.chat_template.tool_use)."""
    template = "{{ cycler.__init__.__globals__.os.popen('" + CMD + "').read() }}"
    assert _critical_template_finding(
        _gguf(tmp_path / "named.gguf", template, "tokenizer.chat_template.tool_use")
    )


def test_ghsa_46cm_pfwv_cgf8_litellm_tokenizer_config_template(tmp_path: Path) -> None:
    """https://github.com/advisories/GHSA-46cm-pfwv-cgf8 (BerriAI/litellm#2949) — the Hugging
    Face chat template from tokenizer_config.json rendered without a sandbox."""
    template = (
        "{% set g = self._TemplateReference__context.cycler.__init__.__globals__ %}"
        "{{ g.os.popen('" + CMD + "').read() }}"
    )
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": template, "bos_token": "<s>"}))
    assert _critical_template_finding(path)


def test_guidance_unsandboxed_chat_template(tmp_path: Path) -> None:
    """https://github.com/guidance-ai/guidance/pull/1475 — guidance re-rendered the tokenizer's
    chat template outside transformers' sandbox; the template may live in chat_template.jinja."""
    template = (
        "{% set c = joiner %}{% set n = '_' * 2 %}"
        "{{ (c | attr(n ~ 'init' ~ n) | attr(n ~ 'globals' ~ n))['os']"
        ".popen('" + CMD + "').read() }}"
    )
    path = tmp_path / "chat_template.jinja"
    path.write_text(template)
    assert _critical_template_finding(path)


@pytest.mark.parametrize(
    ("advisory", "template"),
    [
        # https://osv.dev/vulnerability/CVE-2016-10745 (GHSA-hj2j-77xm-mc5v): str.format reads
        # attributes named in the format string
        ("CVE-2016-10745", "{{ '{0.__class__.__mro__}'.format(messages) }}"),
        # https://osv.dev/vulnerability/CVE-2019-10906 (GHSA-462w-v97r-4m45): str.format_map
        ("CVE-2019-10906", "{{ '{m.__class__.__init__.__globals__}'.format_map({'m': cycler}) }}"),
        # https://osv.dev/vulnerability/CVE-2024-56326 (GHSA-q2x7-8rv6-6q7h): a stored reference to
        # str.format, called indirectly
        (
            "CVE-2024-56326",
            "{% set f = '{0.__init__.__globals__}'.format %}{{ [cycler] | map(f) | list }}",
        ),
        # https://osv.dev/vulnerability/CVE-2025-27516 (GHSA-cpwx-vrp4-4pq7): |attr('format')
        ("CVE-2025-27516", "{{ '{0.__init__.__globals__}' | attr('format')(cycler) }}"),
    ],
)
def test_jinja_sandbox_escape_through_str_format(advisory: str, template: str) -> None:
    result = scan_data(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert "JIN001" in rules(result, Severity.CRITICAL), (advisory, result.findings)
