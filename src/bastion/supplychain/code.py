"""`bastion code`: ML-aware static analysis of Python sources and Jupyter notebooks.

Calls are resolved through each file's imports (`import torch as t`, `from pickle import loads
as l`), so `t.load(f)` is torch.load and a local function called `load` is not. Nothing is
imported or executed."""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bastion import coverage
from bastion.config import Settings
from bastion.discover import Found, Target, walk
from bastion.findings import Finding, Location, Report, Skip, TargetResult, sort_findings
from bastion.formats import CODE_SUFFIXES
from bastion.records import Record
from bastion.rules import Rule
from bastion.runs import Progress, build_report, error_result, run_targets, start
from bastion.secrets import available as secrets_available
from bastion.secrets import secrets_in
from bastion.supplychain import code_rules as R
from bastion.supplychain.personal_data import personal_data

MAX_SOURCE_BYTES = 8 * 1024 * 1024

PICKLE_LOADERS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cPickle.load",
    "cPickle.loads",
    "joblib.load",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "pandas.read_pickle",
    "shelve.open",
    "sklearn.externals.joblib.load",
    "torch.serialization.load",
}
TORCH_LOADERS = {"torch.load", "torch.serialization.load"}
KERAS_LOADERS = {
    "keras.models.load_model",
    "keras.saving.load_model",
    "tensorflow.keras.models.load_model",
    "tf_keras.models.load_model",
    "keras.src.saving.saving_api.load_model",
}
DOWNLOADERS = {
    "urllib.request.urlretrieve",
    "urllib.request.urlopen",
    "requests.get",
    "requests.post",
    "requests.request",
    "httpx.get",
    "wget.download",
    "torch.hub.load_state_dict_from_url",
    "torch.hub.download_url_to_file",
    "keras.utils.get_file",
    "tensorflow.keras.utils.get_file",
    "urllib3.request",
    "requests.Session.get",
    "datasets.load_dataset",
    "gdown.download",
}
UNSAFE_YAML_LOADERS = {
    "yaml.Loader",
    "yaml.FullLoader",
    "yaml.UnsafeLoader",
    "yaml.CLoader",
    "yaml.CFullLoader",
    "yaml.CUnsafeLoader",
}
TLS_OFF = {"ssl._create_unverified_context", "urllib3.disable_warnings"}


class CodeFinding(Record):
    rule: Rule
    line: int
    column: int
    message: str
    evidence: str


class _Imports(ast.NodeVisitor):
    """local name -> fully qualified name, from the file's import statements."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.names[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.names[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module is None or node.level:
            return
        for alias in node.names:
            self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):  # requests.Session().get(...)
        inner = _dotted(node.func)
        if inner:
            parts.append(inner)
            return ".".join(reversed(parts))
    return None


def _resolve(name: str | None, imports: dict[str, str]) -> str | None:
    if name is None:
        return None
    head, _, rest = name.partition(".")
    if head in imports:
        return f"{imports[head]}.{rest}" if rest else imports[head]
    return name if head in ("eval", "exec") else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _has_kwargs_splat(call: ast.Call) -> bool:
    return any(k.arg is None for k in call.keywords)


def _string_args(call: ast.Call) -> Iterator[str]:
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value
        elif isinstance(arg, ast.JoinedStr):
            for part in arg.values:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield part.value


def analyse_source(source: str, top_level_await: bool = False) -> list[CodeFinding]:
    """Findings for one Python source text (line/column are 1-based). Notebook cells may use
    `await` at top level, as IPython runs them."""
    flags = ast.PyCF_ONLY_AST | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if top_level_await else 0)
    tree = compile(source, "<source>", "exec", flags=flags, dont_inherit=True)
    visitor = _Imports()
    visitor.visit(tree)
    imports = visitor.names
    out: list[CodeFinding] = []

    def add(rule: Rule, node: ast.AST, message: str, evidence: str) -> None:
        out.append(
            CodeFinding(
                rule=rule,
                line=getattr(node, "lineno", 1),
                column=getattr(node, "col_offset", 0) + 1,
                message=message,
                evidence=evidence,
            )
        )

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.keyword)
            and node.arg == "trust_remote_code"
            and _is_const(node.value, True)
        ):
            add(
                R.REMOTE_CODE,
                node.value,
                "loads a model with trust_remote_code=True",
                "trust_remote_code=True",
            )
        if (
            isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Attribute) and t.attr == "check_hostname" for t in node.targets
            )
            and _is_const(node.value, False)
        ):
            add(
                R.INSECURE_DOWNLOAD,
                node,
                "turns off TLS host-name checking",
                "check_hostname = False",
            )
        if not isinstance(node, ast.Call):
            continue
        name = _resolve(_dotted(node.func), imports)
        if name is None:
            continue
        _check_call(node, name, add)
    return sorted(out, key=lambda f: (f.line, f.column, f.rule.id))


def _check_call(node: ast.Call, name: str, add) -> None:  # type: ignore[no-untyped-def]
    if name in TORCH_LOADERS:
        weights_only = _keyword(node, "weights_only")
        if not _is_const(weights_only, True) and not _has_kwargs_splat(node):
            how = (
                "weights_only=False"
                if _is_const(weights_only, False)
                else "without weights_only=True"
            )
            add(
                R.TORCH_LOAD,
                node,
                f"torch.load {how} unpickles arbitrary objects",
                f"{name}({how})",
            )
        return
    if name in PICKLE_LOADERS:
        add(R.PICKLE_LOAD, node, f"{name} deserialises code-carrying data", name)
        return
    if name in ("numpy.load", "np.load") and _is_const(_keyword(node, "allow_pickle"), True):
        add(
            R.NUMPY_PICKLE,
            node,
            "np.load(allow_pickle=True) unpickles object arrays",
            "numpy.load(allow_pickle=True)",
        )
        return
    if name in KERAS_LOADERS and _is_const(_keyword(node, "safe_mode"), False):
        add(
            R.KERAS_UNSAFE,
            node,
            "load_model(safe_mode=False) runs Lambda bytecode",
            f"{name}(safe_mode=False)",
        )
        return
    if name in ("yaml.load", "yaml.load_all"):
        loader = _keyword(node, "Loader")
        if loader is None and len(node.args) > 1:
            loader = node.args[1]
        loader_name = _dotted(loader) if loader is not None else None
        if loader is None or (
            loader_name
            and loader_name.split(".")[-1] in {n.split(".")[-1] for n in UNSAFE_YAML_LOADERS}
        ):
            add(
                R.YAML_LOAD,
                node,
                f"{name} with {loader_name or 'the default loader'}",
                f"{name}({loader_name or ''})",
            )
        return
    if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"):
        add(R.YAML_LOAD, node, f"{name} constructs arbitrary objects", name)
        return
    if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
        add(
            R.EVAL_EXEC, node, f"{name.split('.')[-1]}() runs a string as code", name.split(".")[-1]
        )
        return
    if name in TLS_OFF:
        add(R.INSECURE_DOWNLOAD, node, f"{name} disables certificate verification", name)
        return
    is_download = name in DOWNLOADERS or (
        name.startswith(("requests.", "httpx."))
        and name.rsplit(".", 1)[-1] in ("get", "post", "request", "stream")
    )
    if is_download:
        if _is_const(_keyword(node, "verify"), False):
            add(
                R.INSECURE_DOWNLOAD,
                node,
                f"{name}(verify=False) skips TLS verification",
                f"{name}(verify=False)",
            )
        for text in _string_args(node):
            if text.lower().startswith("http://") and not re.match(
                r"http://(localhost|127\.|\[::1\])", text.lower()
            ):
                add(R.INSECURE_DOWNLOAD, node, f"{name} fetches over plain http", text[:120])
                break


# --- files ------------------------------------------------------------------------------------


def _finding(
    rule: Rule,
    path: str,
    line: int,
    column: int,
    message: str,
    evidence: str,
    pointer: str | None = None,
) -> Finding:
    return rule.finding(
        Location(path=path, line=line, column=column, pointer=pointer), message, evidence=evidence
    )


def _unreadable(
    display: str, reason: str, line: int | None = None, pointer: str | None = None
) -> Skip:
    """Source bastion cannot parse: a gap (coverage.UNREADABLE), not a finding about it."""
    return Skip(
        location=Location(path=display, line=line, pointer=pointer),
        code=coverage.UNREADABLE,
        reason=reason[:300],
    )


def scan_python(path: Path, display: str) -> tuple[list[Finding], list[Skip]]:
    text = _read(path)
    findings: list[Finding] = []
    try:
        found = analyse_source(text)
    except (SyntaxError, ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None) or 1
        skip = _unreadable(display, f"not analysed: not valid Python ({exc})", line)
        found, skips = [], [skip]
    else:
        skips = []
    findings += [_finding(f.rule, display, f.line, f.column, f.message, f.evidence) for f in found]
    for line, column, kind in secrets_in(text):  # secrets need no parse
        findings.append(_finding(R.SECRET, display, line, column, f"{kind} in source", kind))
    return findings, skips


def _read(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_SOURCE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def scan_notebook(path: Path, display: str) -> tuple[list[Finding], list[Skip]]:
    import nbformat

    raw = _read(path)
    try:
        notebook = nbformat.reads(raw, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises many types for broken JSON/schema
        return [], [_unreadable(display, f"not analysed: not a valid notebook ({exc})")]
    lines = raw.splitlines()
    cursor = 0
    findings: list[Finding] = []
    skips: list[Skip] = []
    for index, cell in enumerate(notebook.cells, 1):
        source = cell.get("source", "")
        if not isinstance(source, str):
            source = "".join(source)
        first, cursor = _locate_cell(lines, source, cursor)
        pointer = f"cell {index}"
        if cell.get("cell_type") == "code":
            try:
                found = analyse_source(_strip_magics(source), top_level_await=True)
            except (SyntaxError, ValueError, RecursionError) as exc:
                # Python cannot run it either, but what it would have done is unknown
                found = []
                line = getattr(exc, "lineno", None)
                skips.append(
                    _unreadable(
                        display,
                        f"{pointer} not analysed: not valid Python ({exc})",
                        first + line - 1 if line else first,
                        pointer,
                    )
                )
            for f in found:
                findings.append(
                    _finding(
                        f.rule,
                        display,
                        first + f.line - 1,
                        f.column,
                        f.message,
                        f.evidence,
                        pointer,
                    )
                )
        for line, column, kind in secrets_in(source):
            findings.append(
                _finding(
                    R.SECRET,
                    display,
                    first + line - 1,
                    column,
                    f"{kind} in {pointer}",
                    kind,
                    pointer,
                )
            )
        for text in _outputs(cell):
            for kind, sample in personal_data(text):
                findings.append(
                    _finding(
                        R.PERSONAL_DATA,
                        display,
                        first,
                        1,
                        f"{kind} in the output of {pointer}",
                        sample,
                        f"{pointer} output",
                    )
                )
            for _line, _column, kind in secrets_in(text):
                findings.append(
                    _finding(
                        R.SECRET,
                        display,
                        first,
                        1,
                        f"{kind} in the output of {pointer}",
                        kind,
                        f"{pointer} output",
                    )
                )
    return findings, skips


def _strip_magics(source: str) -> str:
    """IPython magics and shell escapes are not Python: blank them, keeping line numbers."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!", "?")) else line for line in source.split("\n")
    )


def _locate_cell(lines: list[str], source: str, cursor: int) -> tuple[int, int]:
    """1-based line in the notebook file where the cell's source starts (nbformat stores each
    source line as one JSON string on its own line)."""
    first_line = source.split("\n", 1)[0]
    if first_line:
        needle = json.dumps(first_line + ("\n" if "\n" in source else ""))[:-1]
        for number in range(cursor, len(lines)):
            if needle in lines[number]:
                return number + 1, number + 1
    return cursor + 1, cursor


def _outputs(cell: dict) -> Iterator[str]:  # type: ignore[type-arg]
    """Every text a cell's stored outputs show: streams, rich data (text, HTML, Markdown, LaTeX,
    JSON) and errors (the exception's value and its traceback, where a failing call prints its
    arguments)."""
    for output in cell.get("outputs", []) or []:
        if not isinstance(output, dict):
            continue
        for key in ("text", "evalue", "traceback"):
            text = _joined(output.get(key))
            if text:
                yield text
        data = output.get("data") or {}
        if not isinstance(data, dict):
            continue
        for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
            value = _joined(data.get(mime))
            if value:
                yield value
        document = data.get("application/json")
        if document is not None:
            try:
                yield json.dumps(document, ensure_ascii=False, default=str)
            except (RecursionError, ValueError):  # nested past what json writes: not shown
                continue


def _joined(value: object) -> str:
    """A notebook text field: a string or a list of lines (anything else is not text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return (
            "\n".join(str(part) for part in value)
            if all(isinstance(part, str) for part in value)
            else ""
        )
    return ""


# --- command -----------------------------------------------------------------------------------

SUFFIXES = dict(zip(CODE_SUFFIXES, (scan_python, scan_notebook), strict=True))


def _scan_target(target: Target) -> str:
    started = time.monotonic()
    analyse = SUFFIXES[target.path.suffix.lower()]
    location = Location(path=target.display)
    try:
        findings, skips = analyse(target.path, target.display)
        if not secrets_available():
            skips.append(
                Skip(
                    location=location,
                    code=coverage.MISSING_EXTRA,
                    extra="code",
                    reason="secrets not checked: detect-secrets is not installed",
                )
            )
        result = TargetResult(
            path=target.display,
            format=target.path.suffix.lstrip("."),
            size=target.size,
            findings=sort_findings(findings),
            skips=tuple(skips),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
    except (OSError, ValueError) as exc:
        result = error_result(target.display, str(exc), "code")
    except ImportError as exc:  # nbformat: the notebook is not analysed at all
        result = TargetResult(
            path=target.display,
            format=target.path.suffix.lstrip("."),
            size=target.size,
            skips=(
                Skip(
                    location=location,
                    code=coverage.MISSING_EXTRA,
                    extra="code",
                    reason=f"not analysed: {exc.name or 'nbformat'} is not installed",
                ),
            ),
        )
    return result.model_dump_json()


def run_code_scan(
    paths: Sequence[Path],
    settings: Settings,
    progress: Progress | None = None,
    found: Found | None = None,
) -> Report:
    """`bastion code`: analyse every .py and .ipynb file under `paths` (or in `found`)."""
    started = start()
    found = found or walk(paths, settings.limits.max_files)
    results = [error_result(display, message) for display, message in found.problems]
    targets = [t for t in found.files if t.path.suffix.lower() in CODE_SUFFIXES]
    results += check_code_files(targets, settings, progress)
    return build_report(results, [str(p) for p in paths], settings, started, "code")


def check_code_files(
    targets: Sequence[Target], settings: Settings, progress: Progress | None = None
) -> list[TargetResult]:
    """Analyse each file in an isolated worker, one result each."""
    return run_targets(
        list(targets), lambda t: (t.display, t.size), _scan_target, settings, progress
    )
