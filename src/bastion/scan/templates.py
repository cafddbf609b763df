"""Jinja2 chat templates, wherever a loader reads them: `chat_template.jinja` and
`additional_chat_templates/*.jinja` files, `chat_template` in tokenizer_config.json /
chat_template.json / processor_config.json (a string or a list of named templates), and GGUF
`tokenizer.chat_template*` metadata.

Two analyses, never rendering outside Jinja2's sandbox:
- static (template_static): every attribute, item, attr-filter, `attribute=` and str.format name
  the template uses, with names the template computes followed through its assignments;
- a dry run (template_sandbox): the template is rendered in a recording sandbox with many
  conversation shapes, bounded in steps, time, value sizes and output; what the sandbox refuses is
  what a renderer without a sandbox executes (llama-cpp-python CVE-2024-34359).

jinja2 is imported only when a template is analysed."""

from __future__ import annotations

from bastion.errors import LimitExceeded
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.source import Source

TEMPLATE_INJECTION = Rule(
    id="JIN001",
    title="Chat template reaches Python internals",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="template-injection",
    description="A Jinja2 chat template reads attributes a sandbox refuses (dunder and other "
    "underscore names, frame and code objects), builds attribute or item names at "
    "run time, or reaches attributes through attr/map(attribute=)/str.format. "
    "Inference servers that render templates without a sandbox execute such "
    "templates as code (llama-cpp-python CVE-2024-34359); in a sandbox they are "
    "sandbox-escape attempts.",
    remediation="Replace the chat template with the model family's reference template; render "
    "templates only in jinja2's ImmutableSandboxedEnvironment (jinja2 >= 3.1.6).",
)
TEMPLATE_UNPARSEABLE = Rule(
    id="JIN002",
    title="Chat template does not parse",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="coverage",
    description="The chat template is not valid Jinja2 (with the extensions transformers "
    "enables), so it could not be analysed; other template engines may still "
    "accept it.",
    remediation="Fix or replace the template.",
)
TEMPLATE_UNBOUNDED = Rule(
    id="JIN003",
    title="Chat template does not render within bounds",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="Rendering the template with ordinary conversations did not finish within "
    "bastion's step, time, value-size or output bounds: a renderer (which has no "
    "such bounds) hangs or runs out of memory on every request, and parts of the "
    "template were not analysed at run time.",
    remediation="Replace the chat template with the model family's reference template.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (TEMPLATE_INJECTION, TEMPLATE_UNPARSEABLE, TEMPLATE_UNBOUNDED)

MAX_TEMPLATE_CHARS = 1_000_000
TEMPLATE_FORMAT = "jinja"


class TemplateIssue(Record):
    message: str
    evidence: str
    parse_error: bool = False
    severity: Severity = Severity.CRITICAL
    rule: str = "JIN001"


def analyse_template(text: str, tokens: dict[str, str] | None = None) -> list[TemplateIssue]:
    """Static and dry-run issues of one template; `tokens` are the special tokens the loader
    passes along (bos_token...), from the same config. Raises LimitExceeded when the template
    is too large or too deep to analyse (the scan is then incomplete, never clean)."""
    from jinja2 import TemplateSyntaxError

    from bastion.scan.template_sandbox import dry_run, parse
    from bastion.scan.template_static import analyse_tree

    if len(text) > MAX_TEMPLATE_CHARS:  # fail closed: never "too big, so fine"
        raise LimitExceeded(f"chat template of {len(text)} characters (limit {MAX_TEMPLATE_CHARS})")
    try:
        env, tree = parse(text)
    except TemplateSyntaxError as exc:
        return [
            TemplateIssue(
                message=f"template does not parse: {exc.message}",
                evidence=str(exc.message),
                parse_error=True,
            )
        ]
    except RecursionError:
        raise LimitExceeded("chat template nests too deeply to parse") from None
    issues: dict[str, TemplateIssue] = {}
    for found in analyse_tree(tree):
        severity = Severity.CRITICAL if found.critical else Severity.HIGH
        issues.setdefault(
            found.evidence,
            TemplateIssue(message=found.message, evidence=found.evidence, severity=severity),
        )
    try:
        refusals, stopped = dry_run(env, tree, tokens)
    except (TemplateSyntaxError, SyntaxError) as exc:  # parses, but does not compile
        message = getattr(exc, "message", None) or str(exc)
        issues["compile"] = TemplateIssue(
            message=f"template does not compile: {message}",
            evidence=str(message)[:200],
            parse_error=True,
        )
        refusals, stopped = [], None
    for refusal in refusals:
        issues[f"dry run: {refusal.evidence}"] = TemplateIssue(
            message=f"rendering it {refusal.message}; a renderer without a sandbox executes this",
            evidence=f"dry run: {refusal.evidence}",
        )
    if stopped is not None:
        issues["dry run stopped"] = TemplateIssue(
            message=f"rendering it with an ordinary conversation exceeds bounds ({stopped})",
            evidence=f"dry run stopped: {stopped}",
            severity=Severity.MEDIUM,
            rule="JIN003",
        )
    return sorted(issues.values(), key=lambda issue: issue.evidence)


def template_findings(
    location: Location, text: str, what: str, tokens: dict[str, str] | None = None
) -> list[Finding]:
    """Findings for one template text, reported at `location` as `what`."""
    rules = {"JIN001": TEMPLATE_INJECTION, "JIN003": TEMPLATE_UNBOUNDED}
    out = []
    for issue in analyse_template(text, tokens):
        if issue.parse_error:
            out.append(
                TEMPLATE_UNPARSEABLE.finding(
                    location, f"{what}: {issue.message}", evidence=issue.evidence
                )
            )
        else:
            out.append(
                rules[issue.rule].finding(
                    location,
                    f"{what}: {issue.message}",
                    evidence=issue.evidence,
                    severity=issue.severity,
                )
            )
    return out


class TemplateScanner:
    """A template file a loader reads by name (chat_template.jinja and the like)."""

    name = "jinja"
    formats = (TEMPLATE_FORMAT,)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        data = source.read_all(
            min(ctx.limits.max_metadata, 4 * MAX_TEMPLATE_CHARS), "chat template"
        )
        text = data.decode("utf-8", "replace")
        for finding in template_findings(source.location, text, "chat template"):
            ctx.add(finding)
