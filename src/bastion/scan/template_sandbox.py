"""Dry run of a chat template in Jinja2's sandbox, recording everything the sandbox refuses.

transformers renders chat templates in `ImmutableSandboxedEnvironment`; llama-cpp-python before
0.2.72 (CVE-2024-34359) and other servers rendered them without one. What the sandbox refuses
(attributes with underscores or internal to Python, unsafe callables, underscore names stored on
a namespace) is exactly what a renderer without it would execute. The template is rendered with
many plausible conversations (roles, tools, tool calls, documents, multimodal content, reasoning,
generation prompt on and off) so that the branches a real conversation takes are exercised.

Everything is bounded: the template code is traced and stopped after MAX_STEPS lines or
MAX_SECONDS; operators, calls and filters refuse arguments that would allocate more than
MAX_VALUE items; output stops at MAX_OUTPUT characters. Nothing is rendered without the sandbox."""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, is_internal_attribute
from jinja2.utils import Namespace

from bastion.errors import LimitExceeded
from bastion.records import Record

MAX_STEPS = 400_000  # traced template lines + sandbox hooks, over all conversations
MAX_SECONDS = 3.0
MAX_VALUE = 1_000_000  # characters/items a single value may reach
MAX_OUTPUT = 2_000_000  # characters of output per conversation
TEMPLATE_FILE = "<template>"  # the file name Jinja2 compiles from_string templates under
_WIDTH = re.compile(r"%[-#0 +]*(\d+)")


class Refusal(Record):
    message: str
    evidence: str


class OutOfBounds(Exception):
    """The dry run hit a bound; the template keeps a renderer busy or allocates without end."""


class GenerationTag(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` (assistant-token tracking): for
    analysis its body is rendered as is."""

    tags = {"generation"}  # noqa: RUF012 - as jinja2.ext.Extension declares it

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise OutOfBounds(f"more than {MAX_STEPS} steps")
        if self.steps & 0xFF == 0 and time.monotonic() > self.deadline:
            raise OutOfBounds(f"more than {MAX_SECONDS:g}s")

    def check_value(self, value: object) -> None:
        if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > MAX_VALUE:
            raise OutOfBounds(f"a value of {len(value)} items")

    def check_int(self, value: object) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE:
            raise OutOfBounds(f"an argument of {value}")

    def check_format(self, value: object) -> None:
        if isinstance(value, str):
            for width in _WIDTH.findall(value[:10_000]):
                self.check_int(int(width[:12]))


class RecordingSandbox(ImmutableSandboxedEnvironment):
    """The sandbox transformers renders with, recording each refusal instead of hiding it."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            # transformers' extensions, and `do`, which other renderers enable
            extensions=[GenerationTag, "jinja2.ext.loopcontrols", "jinja2.ext.do"],
        )
        self.refusals: dict[str, Refusal] = {}
        self.budget = _Budget()
        self.globals.update(
            range=self._range,
            namespace=_bounded_namespace(self),
            raise_exception=_raise_exception,
            strftime_now=_strftime_now,
        )
        self.filters = {name: self._bounded_filter(filt) for name, filt in self.filters.items()}

    def refuse(self, message: str, evidence: str) -> None:
        if len(self.refusals) < 64:
            self.refusals.setdefault(evidence, Refusal(message=message, evidence=evidence))

    # -- what the sandbox refuses -----------------------------------------------------------
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        self.budget.step()
        safe = super().is_safe_attribute(obj, attr, value)
        if not safe and (attr.startswith("_") or is_internal_attribute(obj, attr)):
            self.refuse(
                f"reads attribute '{attr}' of a {type(obj).__name__}, which the sandbox refuses",
                f"{type(obj).__name__}.{attr}",
            )
        return safe

    def is_safe_callable(self, obj: Any) -> bool:
        safe = super().is_safe_callable(obj)
        if not safe:
            self.refuse("calls a callable the sandbox marks unsafe", f"call {type(obj).__name__}")
        return safe

    # -- bounds -------------------------------------------------------------------------------
    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.step()
        for value in (*args, *kwargs.values()):
            __self.budget.check_int(value)
            __self.budget.check_value(value)
        result = super().call(__context, __obj, *args, **kwargs)
        __self.budget.check_value(result)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.step()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    self.budget.check_int(len(seq) * count)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right * abs(left).bit_length() > 8 * MAX_VALUE:
                raise OutOfBounds(f"{left} ** {right}")
        elif operator == "%":
            self.budget.check_format(left)
        result = super().call_binop(context, operator, left, right)
        self.budget.check_value(result)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.step()
        return super().getitem(obj, argument)

    def _bounded_filter(self, filt: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(filt)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self.budget.step()
            for value in (*args, *kwargs.values()):
                self.budget.check_int(value)
            if args:
                self.budget.check_format(
                    args[0] if isinstance(args[0], str) else args[1] if len(args) > 1 else None
                )
            result = filt(*args, **kwargs)
            self.budget.check_value(result)
            return result

        return bounded

    def _range(self, *args: int) -> _CountedRange:
        for value in args:
            self.budget.check_int(value)
        return _CountedRange(range(*args), self.budget)


def _bounded_namespace(sandbox: RecordingSandbox) -> type[Namespace]:
    """namespace() as transformers offers it (no underscore names), with bounded values."""

    class BoundedNamespace(Namespace):
        def __setitem__(self, name: str, value: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                sandbox.refuse(
                    f"stores '{name}' on a namespace (transformers refuses underscore names there)",
                    f"namespace.{name}",
                )
            sandbox.budget.check_value(value)
            super().__setitem__(name, value)

    return BoundedNamespace


class _CountedRange:
    """range() whose iteration counts against the budget."""

    def __init__(self, inner: range, budget: _Budget) -> None:
        self._inner = inner  # underscore names: the sandbox keeps templates out of them
        self._budget = budget

    def __iter__(self) -> Iterator[int]:
        for value in self._inner:
            self._budget.step()
            yield value

    def __reversed__(self) -> Iterator[int]:
        return iter(_CountedRange(self._inner[::-1], self._budget))

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: Any) -> Any:
        return self._inner[index]

    def __contains__(self, value: object) -> bool:
        return value in self._inner


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    import datetime

    return datetime.datetime(2026, 1, 2, 3, 4, 5).strftime(str(fmt)[:200])


def _tracer(budget: _Budget) -> Callable[[FrameType, str, Any], Any]:
    """A trace function that counts the lines of template code and watches its variables."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        budget.step()
        if budget.steps & 0x3F == 0:
            for value in frame.f_locals.values():
                budget.check_value(value)
        return local

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != TEMPLATE_FILE:
            return None
        for value in frame.f_locals.values():
            budget.check_value(value)
        return local

    return trace


def conversations(tokens: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Keyword arguments of apply_chat_template-like renders covering the usual branches, with
    the model's own special tokens when known (transformers passes them to the template)."""
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "enum": [1, 2, 3]},
                },
                "required": ["city"],
            },
        },
    }
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    }
    call_text = {**call, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    system = {"role": "system", "content": "You are helpful."}
    user = {"role": "user", "content": "Hello"}
    assistant = {"role": "assistant", "content": "Hi, how can I help?"}
    reasoning = {
        "role": "assistant",
        "content": "<think>\nhm\n</think>\n\nSunny.",
        "reasoning_content": "hm",
    }
    multimodal = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "Describe it"}],
    }
    tool_turn = [
        user,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "content": '{"temp": 21}',
            "tool_call_id": "call_1",
            "name": "get_weather",
        },
    ]
    text_tool_turn = [
        user,
        {"role": "assistant", "content": None, "tool_calls": [call_text]},
        {"role": "tool", "content": "21", "tool_call_id": "call_1"},
    ]
    tokens = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        **(tokens or {}),
    }
    shapes: list[dict[str, Any]] = [
        {"messages": [user]},
        {"messages": [system, user, assistant, user]},
        {"messages": [user, assistant]},
        {"messages": [system, user, reasoning, user], "enable_thinking": True},
        {"messages": [user], "enable_thinking": False},
        {"messages": [system, *tool_turn], "tools": [tool]},
        {"messages": text_tool_turn, "tools": [tool], "tools_in_user_message": True},
        {
            "messages": [system, *tool_turn, assistant],
            "tools": [tool],
            "builtin_tools": ["code_interpreter"],
            "date_string": "2 Jan 2026",
        },
        {"messages": [user], "documents": [{"title": "Doc", "text": "Some text"}]},
        {"messages": [multimodal]},
        {
            "messages": [
                system,
                multimodal,
                {"role": "assistant", "content": [{"type": "text", "text": "A cat"}]},
            ]
        },
        {"messages": []},
        # a long agent session: branches on the conversation's length (`messages|length > 9`)
        {"messages": [system, *(tool_turn * 4), assistant, user], "tools": [tool]},
    ]
    for shape in shapes:
        for prompt in (True, False):
            yield {**tokens, **shape, "add_generation_prompt": prompt}


def _jinja_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in re.findall(r"\d+", version("jinja2"))[:3])


def parse(text: str) -> tuple[RecordingSandbox, nodes.Template]:
    """Parse with the extensions transformers enables; raises TemplateSyntaxError."""
    env = RecordingSandbox()
    return env, env.parse(text)


def dry_run(
    env: RecordingSandbox, tree: nodes.Template, tokens: dict[str, str] | None = None
) -> tuple[list[Refusal], str | None]:
    """Render the parsed template with every conversation shape; return what the sandbox
    refused, and why the dry run stopped early (None when it completed)."""
    if _jinja_version() < (3, 1, 6):  # CVE-2024-56326, CVE-2025-27516: escapes from the sandbox
        raise LimitExceeded(
            "jinja2 older than 3.1.6 cannot render untrusted templates safely; "
            "upgrade jinja2 to analyse chat templates"
        )
    previous = sys.gettrace()
    stopped: str | None = None
    try:
        template = env.from_string(tree)
        sys.settrace(_tracer(env.budget))
        for kwargs in conversations(tokens):
            output = 0
            try:
                for chunk in template.generate(**kwargs):
                    output += len(chunk)
                    if output > MAX_OUTPUT:
                        raise OutOfBounds(f"more than {MAX_OUTPUT} characters of output")
            except OutOfBounds:
                raise
            except RecursionError:
                raise OutOfBounds("recursion deeper than Python allows") from None
            except MemoryError:
                raise OutOfBounds("memory exhausted") from None
            except Exception:  # a conversation the template rejects (raise_exception...)
                continue
    except OutOfBounds as exc:
        stopped = str(exc)
    finally:
        sys.settrace(previous)
    return list(env.refusals.values()), stopped
