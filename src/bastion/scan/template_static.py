"""Static analysis of a parsed Jinja2 template: every place where the template reaches an object
by a name, and whether that name could lead out of the data into Python internals.

A renderer without a sandbox (llama-cpp-python before CVE-2024-34359, custom servers) resolves
`x.name`, `x['name']`, `x|attr(name)`, `map(attribute=name)` and `'{0.name}'.format(x)` with
Python's getattr, so any name with an underscore (`__class__`, `__globals__`, `gi_frame`,
`_TemplateReference__context`) or `mro` walks to `os`. Literal names are checked directly; a
name the template *computes* (`'_' * 2 ~ 'class'`, `'%c' | format(95)`, a `join` of characters,
a slice of a string, a variable or macro argument assigned any of these) is followed through the
template's assignments ("taint") and reported where it is used as a name. Names that come from
the conversation data (`message[key]` with `key` from the messages) are the renderer's data, not
the template's code, and are not reported — but a character the template picks out of them by
position (`key[4]`, `key | first`) is followed like a literal, since a conversation's keys are
as predictable as a literal. The dry run (template_sandbox) covers what the
template does at run time; this covers the branches the dry run does not take."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from jinja2 import nodes

from bastion.records import Record

# Attribute names that lead from an ordinary object to Python internals without an underscore
# (everything else needs one: dunders, frame/code attributes, name-mangled Jinja internals).
INTERNAL_NAMES = frozenset(
    {
        "mro",
        "func_globals",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_builtins",
        "f_locals",
        "tb_frame",
        "co_consts",
    }
)
# Names that only matter once an escape reached a module: reported as defence in depth.
PAYLOAD_NAMES = frozenset(
    {
        "popen",
        "system",
        "eval",
        "exec",
        "import_module",
        "environ",
        "subprocess",
        "getattr",
        "globals",
        "builtins",
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "check_output",
        "spawnl",
        "execv",
        "execve",
        "load_module",
        "exec_module",
    }
)
_DUNDER = re.compile(r"^__\w+__\Z")
# Filters that pick an item out of a sequence: out of a string, a character.
PICKING_FILTERS = frozenset({"first", "last", "random", "min", "max", "batch", "slice"})
# Filters and methods that format: '%c' | format(95) and '{:c}'.format(95) make '_' from a number.
FORMATTERS = frozenset({"format", "format_map"})
# Filters that turn their input into text: `lipsum | string` shows an underscore.
STRINGIFYING_FILTERS = frozenset(
    {
        "string",
        "pprint",
        "tojson",
        "xmlattr",
        "urlencode",
        "list",
        "format",
        "join",
        "replace",
        "lower",
        "upper",
        "capitalize",
        "title",
        "trim",
        "center",
        "indent",
        "truncate",
        "wordwrap",
        "escape",
        "e",
        "forceescape",
        "safe",
        "striptags",
        "reverse",
        "first",
        "last",
    }
)
# Filters and tests that resolve an attribute named by an argument: (positional index of the
# name, or None when only the `attribute=` keyword names it).
ATTRIBUTE_ARGUMENT = {
    "map": None,
    "sort": 2,
    "groupby": 0,
    "sum": 0,
    "unique": 1,
    "min": 1,
    "max": 1,
    "join": 1,
    "selectattr": 0,
    "rejectattr": 0,
    "dictsort": None,
}
# Callables that hand back an object whose repr (via |string) contains underscores.
_OBJECT_GLOBALS = frozenset(
    {
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "range",
        "dict",
        "self",
        "loop",
        "caller",
        "varargs",
        "kwargs",
        "raise_exception",
        "strftime_now",
    }
)
# str methods that return text made from their receiver's characters: on anything but a literal
# without underscores (a conversation key such as 'tool_calls' included) the result can hold an
# underscore the template cut out (`k.strip('tolcas')` is '_')
TEXT_METHODS = frozenset(
    {
        "strip",
        "lstrip",
        "rstrip",
        "replace",
        "lower",
        "upper",
        "title",
        "capitalize",
        "casefold",
        "swapcase",
        "split",
        "rsplit",
        "splitlines",
        "partition",
        "rpartition",
        "join",
        "format",
        "format_map",
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "removeprefix",
        "removesuffix",
        "translate",
        "encode",
        "decode",
    }
)
MAX_PASSES = 64
_CHAR_CONVERSION = re.compile(r"%[-#0 +\d.*]*c|\{[^{}]*:[^{}]*c\}")


class StaticIssue(Record):
    message: str
    evidence: str
    critical: bool  # a literal escape; otherwise a computed name (reported as high)


def dangerous_name(name: str) -> bool:
    """Could `name`, resolved with getattr on an ordinary object, lead to Python internals?"""
    return name.startswith("_") or "__" in name or name in INTERNAL_NAMES or name in PAYLOAD_NAMES


def _dangerous_path(name: str) -> bool:
    """`attribute=` accepts dotted paths ('a.__class__') and resolves each part."""
    return any(dangerous_name(part) for part in name.split("."))


def _format_fields(text: str) -> list[str]:
    try:
        return [
            field
            for _lit, field, _spec, _conv in string.Formatter().parse(text)
            if field is not None
        ]
    except ValueError:
        return ["<invalid format string>"]


class _Taint:
    """Which expressions may evaluate to a string the template assembled from its own material:
    a literal holding an underscore, a number run through a %c / {:c} format, the repr of an
    object (`lipsum|string`), or anything computed from those (concatenation, slicing, join,
    filters, containers, variables, namespace attributes and macro arguments bound to them).
    Conversation data does not taint: names from it are the renderer's, not the template's."""

    def __init__(self, tree: nodes.Template) -> None:
        self.tainted: set[str] = set()  # variables ("x", "ns.attr") that may hold such a string
        self.macros: dict[str, nodes.Macro] = {m.name: m for m in tree.find_all(nodes.Macro)}
        self._macro_taint: dict[str, bool] = {}
        self.bindings = list(_bindings(tree, set(self.macros)))
        for _ in range(MAX_PASSES):  # fixpoint: assignments may chain in any order
            before = len(self.tainted)
            for target, value in self.bindings:
                if target not in self.tainted and self._bound(value):
                    self.tainted.add(target)
            if len(self.tainted) == before:
                break

    def _bound(self, value: nodes.Node | list[nodes.Node]) -> bool:
        if isinstance(value, list):  # a block rendered into a variable, or a call block body
            return any(self._renders_underscore(node) for node in value)
        return self.of(value)

    def _renders_underscore(self, node: nodes.Node) -> bool:
        for data in node.find_all(nodes.TemplateData):
            if "_" in data.data:
                return True
        return any(self.of(expr) for expr in node.find_all(nodes.Expr)) or (
            isinstance(node, nodes.TemplateData) and "_" in node.data
        )

    def _macro_output(self, name: str) -> bool:
        """Does the macro render text the template builds? (A recursive call counts as no:
        its own body is judged once.)"""
        if name not in self._macro_taint:
            macro = self.macros.get(name)
            self._macro_taint[name] = False
            self._macro_taint[name] = macro is not None and any(
                self._renders_underscore(part) for part in macro.body
            )
        return self._macro_taint[name]

    def _name(self, node: nodes.Node) -> str | None:
        if isinstance(node, nodes.Name):
            return node.name
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            return f"{node.node.name}.{node.attr}"
        return None

    def of(self, node: nodes.Node) -> bool:
        """May the expression be a string assembled by the template (a computed name)?"""
        if isinstance(node, nodes.Const):
            return isinstance(node.value, str) and "_" in node.value
        name = self._name(node)
        if name is not None and name in self.tainted:
            return True
        if isinstance(node, nodes.Name):  # special tokens come from the same config
            return node.name.endswith(("_token", "_tokens"))
        formatting = (
            isinstance(node, nodes.Mod)
            or (isinstance(node, nodes.Filter) and node.name in FORMATTERS)
            or (
                isinstance(node, nodes.Call)
                and isinstance(node.node, nodes.Getattr)
                and node.node.attr in FORMATTERS
            )
        )
        if formatting and any(
            (isinstance(c.value, int) and not isinstance(c.value, bool))
            or (isinstance(c.value, str) and _CHAR_CONVERSION.search(c.value))
            for c in node.find_all(nodes.Const)
        ):
            return True  # '%c' % 95, '{:c}'.format(i): characters made from numbers
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and any(
                isinstance(c.value, int) and not isinstance(c.value, bool)
                for c in node.find_all(nodes.Const)
            )
        ):
            return True  # (95).to_bytes(1, 'big').decode(): methods turn numbers into text
        if _stringifies(node) and not all(
            isinstance(child, nodes.Const) for child in node.iter_child_nodes()
        ):
            # the text of anything but a literal can show an underscore the template picks
            # out: lipsum ~ '', namespace(a_b=1) | string, messages | map('x') | string
            # ("<generator object sync_do_map ...>"), m.keys() | string ("dict_keys([...])")
            return True
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Name)
            and (
                node.node.name in ("caller", "loop", "super") or self._macro_output(node.node.name)
            )
        ):
            return True  # a macro, caller(), loop() of a recursive loop return rendered text
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and isinstance(node.node.node, nodes.Name)
            and node.node.node.name == "self"
        ):
            return True  # self.block() returns the block's rendered text
        if isinstance(node, nodes.Call) and any(dangerous_name(k.key) for k in node.kwargs):
            return True  # dict(__class__=1): keyword names are strings the template supplies
        if isinstance(node, nodes.Getitem) and (
            isinstance(node.arg, nodes.Slice)
            or (isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, int))
        ):
            return True  # k[4], k[1:3]: a character picked out of any text, data included —
            # the keys of a conversation ('tool_calls') are as predictable as a literal
        if isinstance(node, nodes.Filter) and node.name in PICKING_FILTERS:
            return True  # k | first, k | last: the same, as filters
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and node.node.attr in TEXT_METHODS
            and not _clean_literal(node.node.node)
        ):
            return True  # k.strip('tolcas'), k.replace('tool', ''): text cut out of the
            # receiver, a conversation key as predictable as a literal (A2-05c)
        if isinstance(node, (nodes.Add, nodes.Mul)) and _joins_text(node):
            return True  # k + 'x', k * 2: text made from a non-literal, like `~`
        return any(self.of(child) for child in node.iter_child_nodes())


def _clean_literal(node: nodes.Node) -> bool:
    """A literal that cannot contribute an underscore (a number, or text without one)."""
    return isinstance(node, nodes.Const) and not (isinstance(node.value, str) and "_" in node.value)


def _joins_text(node: nodes.Add | nodes.Mul) -> bool:
    """`+` / `*` that certainly operates on text (a string literal among the operands of the
    chain) with an operand that is not a clean literal."""
    leaves: list[nodes.Node] = []
    stack: list[nodes.Node] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (nodes.Add, nodes.Mul)):
            stack += [item.left, item.right]
        else:
            leaves.append(item)
    text = any(isinstance(o, nodes.Const) and isinstance(o.value, str) for o in leaves)
    return text and not all(_clean_literal(o) for o in leaves)


def _stringifies(node: nodes.Node) -> bool:
    """Does the expression turn its operands into text?"""
    if isinstance(node, (nodes.Concat, nodes.Mod)):
        return True
    if isinstance(node, nodes.Filter):
        return node.name in STRINGIFYING_FILTERS
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Getattr)
        and node.node.attr in ("format", "format_map", "join")
    )


def _targets(target: nodes.Node) -> Iterator[str]:
    if isinstance(target, nodes.Name):
        yield target.name
    elif isinstance(target, nodes.NSRef):
        yield f"{target.name}.{target.attr}"
    elif isinstance(target, (nodes.Tuple, nodes.List)):
        for item in target.items:
            yield from _targets(item)


def _loop_items(tree: nodes.Template) -> set[str]:
    """Variables that hold an item a loop produced: loop targets, and names set to one of them
    (`{% set kk = k %}{% for c in kk %}` iterates a key as `{% for c in k %}` does)."""
    items = {name for loop in tree.find_all(nodes.For) for name in _targets(loop.target)}
    aliases: list[tuple[str, str]] = []
    pairs: list[tuple[nodes.Node, nodes.Node]] = []
    for assign in tree.find_all(nodes.Assign):
        pairs.append((assign.target, assign.node))
    for with_ in tree.find_all(nodes.With):
        pairs += zip(with_.targets, with_.values, strict=False)
    for target, value in pairs:
        if isinstance(value, nodes.Name):
            aliases += [(name, value.name) for name in _targets(target)]
    for _ in range(MAX_PASSES):
        grown = {name for name, source in aliases if source in items} - items
        if not grown:
            break
        items |= grown
    return items


def _bindings(
    tree: nodes.Template, macros: set[str]
) -> Iterator[tuple[str, nodes.Node | list[nodes.Node]]]:
    """(variable, the expression bound to it) for every way a template binds a name; a list of
    nodes stands for text the template renders into it (block set, call block)."""
    params: dict[str, list[str]] = {}
    loop_targets = _loop_items(tree)
    for macro in tree.find_all(nodes.Macro):
        names = [arg.name for arg in macro.args]
        params[macro.name] = names
        for arg, default in zip(reversed(macro.args), reversed(macro.defaults), strict=False):
            yield arg.name, default
    for node in tree.find_all(
        (nodes.Assign, nodes.AssignBlock, nodes.For, nodes.With, nodes.Call, nodes.CallBlock)
    ):
        if isinstance(node, nodes.Assign):
            for name in _targets(node.target):
                yield name, node.node
        elif isinstance(node, nodes.AssignBlock):
            for name in _targets(node.target):
                yield name, node.body
        elif isinstance(node, nodes.For):
            nested = isinstance(node.iter, nodes.Name) and node.iter.name in loop_targets
            for name in _targets(node.target):
                # iterating an item another loop produced (`for k in m`, `for c in k`): the
                # characters of a conversation key, as predictable as a literal
                yield name, nodes.Const("_") if nested else node.iter
        elif isinstance(node, nodes.With):
            for target, value in zip(node.targets, node.values, strict=False):
                for name in _targets(target):
                    yield name, value
        elif isinstance(node, nodes.CallBlock):
            for arg in node.args:
                yield arg.name, node.body
        elif (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Name)
            and node.node.name in macros
        ):
            names = params.get(node.node.name, [])
            for index, value in enumerate(node.args):
                yield (names[index] if index < len(names) else "varargs"), value
            for keyword in node.kwargs:
                if keyword.key in names:
                    yield keyword.key, keyword.value
                else:  # the macro sees the keyword's *name* in kwargs
                    yield "kwargs", nodes.Const(keyword.key)
            for extra in (node.dyn_args, node.dyn_kwargs):
                if extra is not None:
                    for name in (*names, "varargs", "kwargs"):
                        yield name, extra


def _const_str(node: nodes.Node | None) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


def _attribute_argument(node: nodes.Filter | nodes.Test) -> nodes.Node | None:
    for keyword in node.kwargs:
        if keyword.key == "attribute":
            return keyword.value
    index = ATTRIBUTE_ARGUMENT.get(node.name)
    if index is not None and index < len(node.args):
        return node.args[index]
    return None


def _format_issues(receiver: nodes.Node, taint: _Taint) -> list[StaticIssue]:
    """str.format / format_map reads attributes and items named in its fields (`{0.__class__}`);
    sandboxes had escapes through it (CVE-2016-10745, CVE-2019-10906, CVE-2024-56326,
    CVE-2025-27516), a renderer without one follows them."""
    text = _const_str(receiver)
    if text is None:
        return [
            StaticIssue(
                message="uses str.format on a string built at run time (format fields can "
                "read attributes)",
                evidence=".format(<expression>)",
                critical=taint.of(receiver),
            )
        ]
    return [
        StaticIssue(
            message=f"str.format field '{{{field[:60]}}}' reads internal attributes",
            evidence=f".format({field[:60]!r})",
            critical=True,
        )
        for field in _format_fields(text)
        if _dangerous_path(field.replace("[", ".").replace("]", ""))
    ]


def analyse_tree(tree: nodes.Template) -> list[StaticIssue]:
    taint = _Taint(tree)
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    issues: list[StaticIssue] = []

    def name_use(what: str, expr: nodes.Node | None, evidence: str) -> None:
        if expr is None:
            return
        literal = _const_str(expr)
        if literal is not None:
            if _dangerous_path(literal):
                issues.append(
                    StaticIssue(
                        message=f"{what} '{literal[:60]}'",
                        evidence=f"{evidence}({literal[:60]!r})",
                        critical=True,
                    )
                )
        elif not isinstance(expr, nodes.Const):
            issues.append(
                StaticIssue(
                    message=f"{what} named by an expression, not a literal",
                    evidence=f"{evidence}(<expression>)",
                    critical=taint.of(expr),
                )
            )

    for call in tree.find_all(nodes.Call):
        for arg in [*call.args, *(k.value for k in call.kwargs)]:
            text = _const_str(arg)
            if text is not None and (_DUNDER.match(text) or text in INTERNAL_NAMES):
                # getattr('', '__class__'): a renderer that exposes getattr (or any function
                # resolving a name) walks to Python internals with it
                issues.append(
                    StaticIssue(
                        message=f"passes the internal name '{text[:60]}' to a call",
                        evidence=f"(…{text[:60]!r}…)",
                        critical=True,
                    )
                )
    for node in tree.find_all(
        (
            nodes.Getattr,
            nodes.Getitem,
            nodes.Filter,
            nodes.Test,
            nodes.NSRef,
            nodes.Include,
            nodes.Import,
            nodes.FromImport,
            nodes.Extends,
        )
    ):
        if isinstance(node, nodes.Getattr):
            if dangerous_name(node.attr):
                issues.append(
                    StaticIssue(
                        message=f"accesses attribute '{node.attr}'",
                        evidence=f".{node.attr}",
                        critical=True,
                    )
                )
            if node.attr in FORMATTERS and (
                id(node) in called or _const_str(node.node) is not None or taint.of(node.node)
            ):
                issues += _format_issues(node.node, taint)
        elif isinstance(node, nodes.Getitem):
            key = _const_str(node.arg)
            if key is not None and dangerous_name(key):
                issues.append(
                    StaticIssue(
                        message=f"accesses item '{key[:60]}'",
                        evidence=f"[{key[:60]!r}]",
                        critical=True,
                    )
                )
            elif key is None and taint.of(node.arg):
                issues.append(
                    StaticIssue(
                        message="looks up an item by a name the template builds",
                        evidence="computed subscript",
                        critical=False,
                    )
                )
        elif isinstance(node, (nodes.Filter, nodes.Test)):
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            if (
                node.name == "attr"
                and node.node is not None
                and node.args
                and _const_str(node.args[0]) in FORMATTERS
            ):  # CVE-2025-27516
                issues += _format_issues(node.node, taint)
            if node.name == "attr":
                name_use(
                    "reads an attribute through the attr filter",
                    node.args[0] if node.args else None,
                    "|attr",
                )
                if node.dyn_args is not None or node.dyn_kwargs is not None:
                    issues.append(
                        StaticIssue(
                            message="calls the attr filter with unpacked arguments",
                            evidence="|attr(*)",
                            critical=False,
                        )
                    )
            if node.name in ATTRIBUTE_ARGUMENT or any(k.key == "attribute" for k in node.kwargs):
                name_use(
                    f"reads an attribute through the {node.name} {kind}",
                    _attribute_argument(node),
                    f"|{node.name}",
                )
            if (
                node.name == "map"  # map applies a filter by name: attr among them
                and node.args
                and not any(k.key == "attribute" for k in node.kwargs)
            ):
                applied = _const_str(node.args[0])
                if applied is None:
                    issues.append(
                        StaticIssue(
                            message="map applies a filter chosen at run time",
                            evidence="|map(<expression>)",
                            critical=False,
                        )
                    )
                elif applied == "attr":
                    name_use(
                        "maps the attr filter over values",
                        node.args[1] if len(node.args) > 1 else None,
                        "|map('attr')",
                    )
        elif isinstance(node, nodes.NSRef):
            if dangerous_name(node.attr):
                issues.append(
                    StaticIssue(
                        message=f"stores namespace attribute '{node.attr}'",
                        evidence=f"{node.name}.{node.attr} =",
                        critical=True,
                    )
                )
        else:
            what = type(node).__name__.lower()
            issues.append(
                StaticIssue(
                    message=f"{what}s another template through the renderer's loader (reads files)",
                    evidence=f"{{% {what} %}}",
                    critical=False,
                )
            )
    return issues
