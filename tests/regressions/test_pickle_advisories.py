"""One regression test per published pickle-scanner bypass (picklescan, fickling, modelscan,
ModelAudit advisories 2023-2026; zip-container ones are in the archive tests). Each sample is
rebuilt from its advisory with a harmless payload and must fail the default gate; bastion's
allowlist does not depend on anyone having listed the gadget."""

from __future__ import annotations

import pickle
import struct
from typing import Any

import pytest
from corpus import opcodes as op
from helpers import scan_data

from bastion.findings import Severity

PAYLOAD = "__import__('os').system('echo bastion-marker')"
PS = "https://github.com/mmaitre314/picklescan/security/advisories/"
FK = "https://github.com/trailofbits/fickling/security/advisories/"


def reduce_call(module: str, name: str, args: tuple[Any, ...]) -> bytes:
    """PROTO 4, GLOBAL module name (dotted names resolve as attribute paths at protocol 4),
    the arguments as pickle writes them, REDUCE, STOP."""
    body = pickle.dumps(args, protocol=2)[2:-1]
    return op.proto(4) + f"c{module}\n{name}\n".encode() + body + b"R."


def worst(data: bytes) -> Severity:
    result = scan_data(data, "advisory.pkl")
    assert result.findings, "nothing reported"
    return max((f.severity for f in result.findings), key=lambda s: s.rank)


# (advisory, link, module, qualified name, arguments)
GADGETS = [
    ("GHSA-4r9r-ch6f-vxmx", PS, "torch.utils.bottleneck.__main__", "run_cprofile", (PAYLOAD, {})),
    ("GHSA-86cj-95qr-2p4f", PS, "torch._dynamo.guards", "GuardBuilder.get", ({}, PAYLOAD)),
    (
        "GHSA-f4x7-rfwp-v3xw",
        PS,
        "torch.fx.experimental.symbolic_shapes",
        "ShapeEnv.evaluate_guards_expression",
        ({}, PAYLOAD, []),
    ),
    ("GHSA-f745-w6jp-hpxx", PS, "torch.utils.collect_env", "run", ("echo bastion-marker",)),
    (
        "GHSA-jhph-76pp-mggw",
        PS,
        "torch.utils.collect_env",
        "run_and_read_all",
        (None, "echo bastion-marker"),
    ),
    (
        "GHSA-h3qp-7fh3-f8h4",
        PS,
        "torch.utils.data.datapipes.utils.decoder",
        "basichandlers",
        ("pickle", b""),
    ),
    (
        "GHSA-vr7h-p6mm-wpmh",
        PS,
        "torch.jit.unsupported_tensor_ops",
        "execWrapper",
        (PAYLOAD, {}, {}),
    ),
    (
        "GHSA-vv6j-3g6g-2pvj",
        PS,
        "torch.utils._config_module",
        "ConfigModule.load_config",
        ({}, b""),
    ),
    ("GHSA-5qwp-399c-mjwf", PS, "trace", "Trace.run", ({}, PAYLOAD)),
    ("GHSA-g344-hcph-8vgg", PS, "trace", "Trace.runctx", ({}, PAYLOAD, {}, {})),
    ("GHSA-x696-vm39-cp64", PS, "profile", "Profile.run", ({}, PAYLOAD)),
    ("GHSA-6vqj-c2q5-j97w", PS, "profile", "Profile.runctx", ({}, PAYLOAD, {}, {})),
    ("GHSA-f54q-57x4-jg88", PS, "lib2to3.pgen2.grammar", "Grammar.loads", ({}, b"")),
    ("GHSA-3vg9-h568-4w9m", PS, "idlelib.debugobj", "ObjectTreeItem.SetText", ({}, PAYLOAD)),
    ("GHSA-6w4w-5w54-rjvr", PS, "idlelib.autocomplete", "AutoComplete.get_entity", ({}, PAYLOAD)),
    (
        "GHSA-7cq8-mj8x-j263",
        PS,
        "idlelib.autocomplete",
        "AutoComplete.fetch_completions",
        ({}, PAYLOAD, 1),
    ),
    ("GHSA-cj3c-v495-4xqh", PS, "code", "InteractiveInterpreter.runcode", ({}, PAYLOAD)),
    ("GHSA-8r4j-24qv-fmq9", PS, "idlelib.calltip", "Calltip.fetch_tip", ({}, PAYLOAD)),
    ("GHSA-9xph-j2h6-g47v", PS, "idlelib.calltip", "get_entity", (PAYLOAD,)),
    (
        "GHSA-4whj-rm5r-c2v8",
        PS,
        "torch.utils.bottleneck.__main__",
        "run_autograd_prof",
        (PAYLOAD, {}),
    ),
    ("GHSA-xp4f-hrf8-rxw7", PS, "ensurepip", "_run_pip", (["--version"],)),
    (
        "GHSA-p9w7-82w4-7q8m",
        PS,
        "lib2to3.pgen2.pgen",
        "ParserGenerator.make_label",
        (None, {}, '""+' + PAYLOAD),
    ),
    ("GHSA-vvpj-8cmc-gx39", PS, "pkgutil", "resolve_name", ("os:system",)),
    ("GHSA-m869-42cg-3xwr", PS, "idlelib.run", "Executive.runcode", ({}, PAYLOAD)),
    ("GHSA-j343-8v2j-ff7w", PS, "idlelib.pyshell", "ModifiedInterpreter.runcommand", ({}, PAYLOAD)),
    ("GHSA-3gf5-cxq9-w223", PS, "idlelib.pyshell", "ModifiedInterpreter.runcode", ({}, PAYLOAD)),
    ("GHSA-fqq6-7vqf-w3fg", PS, "doctest", "debug_script", (PAYLOAD, True)),
    ("GHSA-9w88-8rmg-7g2p", PS, "cProfile", "runctx", (PAYLOAD, None, None)),
    ("GHSA-49gj-c84q-6qm9", PS, "cProfile", "run", (PAYLOAD,)),
    ("GHSA-7wx9-6375-f5wh", PS, "profile", "run", (PAYLOAD,)),
    (
        "GHSA-q77w-mwjj-7mqx",
        PS,
        "asyncio.unix_events",
        "_UnixSubprocessTransport._start",
        ({}, "echo bastion-marker", True, None, None, None, 0),
    ),
    (
        "GHSA-jgw4-cr84-mqxg",
        PS,
        "asyncio.unix_events",
        "_UnixSubprocessTransport._start",
        ({}, "echo bastion-marker", True, None, None, None, 0),
    ),
    ("GHSA-m273-6v24-x4m4", PS, "distutils.file_util", "write_file", ("x.env", ["content"])),
    ("GHSA-4675-36f9-wf6r", PS, "ctypes", "CDLL", (None,)),
    ("GHSA-vqmv-47xg-9wpr", PS, "pty", "spawn", (["/bin/echo", "bastion-marker"],)),
    ("GHSA-r8g5-cgf2-4m4m", PS, "numpy.f2py.crackfortran", "getlincoef", (PAYLOAD, [])),
    ("GHSA-g38g-8gr9-h9xp (uuid)", PS, "uuid", "_get_command_stdout", ("echo",)),
    ("GHSA-g38g-8gr9-h9xp (_osx_support)", PS, "_osx_support", "_read_output", ("echo",)),
    ("GHSA-g38g-8gr9-h9xp (_aix_support)", PS, "_aix_support", "_read_cmd_output", ("echo",)),
    ("GHSA-g38g-8gr9-h9xp (imaplib)", PS, "imaplib", "IMAP4_stream", ("echo",)),
    ("GHSA-g38g-8gr9-h9xp (_pyrepl)", PS, "_pyrepl.pager", "pipe_pager", ("text", "echo")),
    (
        "GHSA-g38g-8gr9-h9xp (test.support)",
        PS,
        "test.support.script_helper",
        "assert_python_ok",
        ("-c", "pass"),
    ),
    ("GHSA-955r-x9j8-7rhh", PS, "_operator", "methodcaller", ("system", "echo")),
    ("GHSA-46h3-79wf-xr6c", PS, "operator", "attrgetter", ("system",)),
    ("GHSA-hgrh-qx5j-jfwx", PS, "ssl", "get_server_certificate", (("example.invalid", 443),)),
    ("picklescan io.FileIO", PS, "_io", "FileIO", ("/etc/hostname", "r")),
    (
        "picklescan urllib.request.urlopen",
        PS,
        "urllib.request",
        "urlopen",
        ("https://example.invalid",),
    ),
    ("picklescan logging.FileHandler", PS, "logging", "FileHandler", ("evil.log",)),
    ("GHSA-r7v6-mfhq-g3m2", FK, "pty", "spawn", (["/bin/echo", "bastion-marker"],)),
    ("GHSA-565g-hwwr-4pp3", FK, "marshal", "loads", (b"\xe3",)),
    (
        "GHSA-m6fh-58r7-x697 (_posixsubprocess)",
        FK,
        "_posixsubprocess",
        "fork_exec",
        (["/bin/echo"],),
    ),
    ("GHSA-m6fh-58r7-x697 (site)", FK, "site", "addsitedir", ("/tmp",)),
    ("GHSA-m6fh-58r7-x697 (atexit)", FK, "atexit", "register", (print, "bastion-marker")),
    ("GHSA-5hwf-rc88-82xm", FK, "uuid", "_get_command_stdout", ("echo",)),
    ("GHSA-6ggj-6f2q-f7mx", FK, "_interpreters", "run_string", (0, PAYLOAD)),
    ("GHSA-q5qq-mvfm-j35x", FK, "os.path", "os.system", ("echo bastion-marker",)),
    ("GHSA-wfq2-52f7-7qvj", FK, "runpy", "_run_code", (PAYLOAD, {})),
    ("GHSA-p523-jq9w-64x9", FK, "pydoc", "locate", ("os",)),
    ("GHSA-5hvc-6wx8-mvv4", FK, "cProfile", "run", (PAYLOAD,)),
]


@pytest.mark.parametrize("advisory,link,module,name,args", GADGETS, ids=[g[0] for g in GADGETS])
def test_published_gadget_fails_the_gate(
    advisory: str, link: str, module: str, name: str, args: tuple[Any, ...]
) -> None:
    """The advisory's gadget (link + advisory id in the parameters), called with the pickle's
    arguments."""
    assert worst(reduce_call(module, name, args)).rank >= Severity.HIGH.rank, link + advisory


@pytest.mark.parametrize("advisory,link,module,name,args", GADGETS, ids=[g[0] for g in GADGETS])
def test_published_gadget_hidden_in_an_allowed_callable_still_fails(
    advisory: str, link: str, module: str, name: str, args: tuple[Any, ...]
) -> None:
    """The same gadget wrapped in functools.partial (an allowed callable whose target is
    judged as called), the way a FunctionTransformer would hold it."""
    partial = op.proto(4) + b"cfunctools\npartial\n" + f"c{module}\n{name}\n".encode() + b"\x85R."
    assert worst(partial).rank >= Severity.HIGH.rank, link + advisory


def test_ghsa_9gvj_pp9x_gcfr_string_operands_of_stack_global() -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-9gvj-pp9x-gcfr —
    STACK_GLOBAL whose operands are pushed by STRING (protocol 0 text) opcodes."""
    data = b"S'os'\nS'system'\n\x93S'echo bastion-marker'\n\x85R."
    assert worst(data) is Severity.CRITICAL


def test_ghsa_84r2_jw7c_4r5q_methodcaller_on_located_module() -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-84r2-jw7c-4r5q —
    methodcaller('system', cmd)(pydoc.locate('os'))."""
    caller = (
        op.stack_global("_operator", "methodcaller")
        + op.s("system")
        + op.s("echo bastion-marker")
        + b"\x86R"
    )
    located = op.stack_global("pydoc", "locate") + op.s("os") + b"\x85R"
    data = op.proto(4) + caller + located + b"\x85R."
    assert worst(data) is Severity.CRITICAL


def test_ghsa_gx77_x2pv_48v7_pytorch_magic_bypass() -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-gx77-x2pv-48v7 (JFrog)
    — a legacy torch.save stream whose later pickles carry the payload after the magic number."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    data = magic + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2) + op.system_call()
    assert worst(data) is Severity.CRITICAL


def test_modelscan_311_classic_string_stack_global() -> None:
    """https://github.com/protectai/modelscan/issues/311 — SHORT_BINSTRING operands for
    STACK_GLOBAL and globals extracted from partially corrupt files."""
    data = b"\x80\x02U\x02osU\x06system\x93U\x04echo\x85R" + b"\xff"
    assert worst(data) is Severity.CRITICAL


def test_modelaudit_exception_oriented_payload_in_build() -> None:
    """https://github.com/trailofbits/fickling/pull/302 (GHSA-6ggj-6f2q-f7mx PoC shape) — the
    call is routed through BUILD/__setstate__ of an object so that AST-based tools see no
    top-level call."""
    data = (
        op.proto(4)
        + b"}"
        + op.stack_global("_interpreters", "run_string")
        + b"K\x00"
        + op.s(PAYLOAD)
        + b"\x86R"
        + b"b."
    )
    assert worst(data) is Severity.CRITICAL


def test_memo_index_denial_of_service() -> None:
    """A 9-byte stream whose memo index makes CPython allocate 1 GiB (issue #7 class 9)."""
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 26) + b"."
    assert "PKL008" in {f.rule_id for f in scan_data(data, "bomb.pkl").findings}
