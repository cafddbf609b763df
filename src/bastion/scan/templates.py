"""Static analysis of Jinja2 chat templates (GGUF metadata, tokenizer_config.json).

Templates are parsed with Jinja2's own parser and never rendered. Server-side template injection
reaches Python objects through dunder attributes (__class__, __globals__ ...), the attr filter,
or names such as cycler/joiner/lipsum/self that expose globals (CVE-2024-34359)."""

from __future__ import annotations

from typing import NamedTuple

from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.rules import Rule

TEMPLATE_INJECTION = Rule(
    id="JIN001", title="Chat template reaches Python internals", severity=Severity.CRITICAL,
    confidence=Confidence.HIGH, stage=Stage.ARTIFACT, profile="template-injection",
    description="A Jinja2 chat template accesses dunder attributes, globals-exposing objects or "
                "builds attribute names at run time. Inference servers that render templates "
                "outside a sandbox execute such templates as code (llama-cpp-python "
                "CVE-2024-34359).",
    remediation="Replace the chat template with the model family's reference template; render "
                "templates only in jinja2's ImmutableSandboxedEnvironment.",
)
TEMPLATE_UNPARSEABLE = Rule(
    id="JIN002", title="Chat template does not parse", severity=Severity.LOW,
    confidence=Confidence.MEDIUM, stage=Stage.ARTIFACT, profile="coverage",
    description="The chat template is not valid Jinja2, so it could not be analysed; other "
                "template engines may still accept it.",
    remediation="Fix or replace the template.",
)

_GLOBAL_EXPOSERS = frozenset({"cycler", "joiner", "namespace", "lipsum", "self", "config",
                              "request", "url_for", "get_flashed_messages", "__builtins__"})
_RISKY_ATTRS = frozenset({"mro", "popen", "system", "eval", "exec", "import_module",
                          "func_globals", "gi_frame", "f_globals", "f_builtins", "environ",
                          "subprocess", "getattr", "globals", "builtins", "read_text",
                          "read_bytes", "write_text"})
_OBFUSCATING_FILTERS = frozenset({"join", "format", "replace", "reverse", "lower", "upper",
                                  "string", "unique", "first", "last", "map"})
MAX_TEMPLATE_CHARS = 1_000_000


class TemplateIssue(NamedTuple):
    message: str
    evidence: str
    parse_error: bool = False


def analyse_template(text: str) -> list[TemplateIssue]:
    from jinja2 import Environment, TemplateSyntaxError, nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if len(text) > MAX_TEMPLATE_CHARS:
        return [TemplateIssue("template is larger than bastion analyses",
                              f"{len(text)} characters", parse_error=True)]
    env: Environment = ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"])
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return [TemplateIssue(f"template does not parse: {exc.message}", str(exc.message),
                              parse_error=True)]
    except RecursionError:
        return [TemplateIssue("template nests too deeply to parse", "recursion",
                              parse_error=True)]
    issues: dict[str, TemplateIssue] = {}

    def add(message: str, evidence: str) -> None:
        issues.setdefault(evidence, TemplateIssue(message, evidence))

    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("_") or node.attr in _RISKY_ATTRS:
            add(f"accesses attribute '{node.attr}'", f".{node.attr}")
    for item in tree.find_all(nodes.Getitem):
        arg = item.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and (
                arg.value.startswith("_") or arg.value in _RISKY_ATTRS):
            add(f"accesses item '{arg.value}'", f"[{arg.value!r}]")
        elif isinstance(arg, (nodes.Concat, nodes.Add, nodes.Mul, nodes.Mod)) or (
                isinstance(arg, nodes.Filter) and arg.name in _OBFUSCATING_FILTERS):
            add("looks up an item by a name built at run time", "computed subscript")
    for filt in tree.find_all(nodes.Filter):
        if filt.name == "attr":
            add("uses the attr filter to reach attributes by name", "|attr")
        if filt.name in ("map",) and any(isinstance(a, nodes.Const) and a.value == "attr"
                                         for a in filt.args):
            add("maps the attr filter over values", "|map('attr')")
    for name in tree.find_all(nodes.Name):
        if name.name in _GLOBAL_EXPOSERS:
            add(f"uses '{name.name}', which exposes Python globals", name.name)
    for const in tree.find_all(nodes.Const):
        if isinstance(const.value, str) and "__" in const.value and any(
                word in const.value for word in ("class", "globals", "builtins", "import",
                                                 "subclasses", "mro", "init", "base")):
            add("contains a dunder name as a string", const.value[:80])
    return sorted(issues.values(), key=lambda issue: issue.evidence)


def template_findings(location: Location, text: str, what: str) -> list[Finding]:
    out = []
    for issue in analyse_template(text):
        rule = TEMPLATE_UNPARSEABLE if issue.parse_error else TEMPLATE_INJECTION
        out.append(rule.finding(location, f"{what}: {issue.message}", evidence=issue.evidence))
    return out
