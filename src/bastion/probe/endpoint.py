"""A prediction endpoint over HTTP as the model under test (black box).

The request is a JSON template in which the string "$rows" stands for a list of rows (one
request carries up to `batch` rows) or "$row" for one row (one request per row); each row is an
object {feature: value}. The response is read with JSON pointers (RFC 6901): `scores` to a list
holding, per row, the class scores (a list in `classes` order, or one number: the last class's
probability), and/or `labels` to a list of labels. With labels only, every attack works from
labels (the evasion search switches to its label-only strategy).

Bounds: a total query budget, a concurrency limit, a per-request timeout, retries with
exponential backoff on connection errors, 429 and 5xx (other 4xx answers are the endpoint
refusing the input, which the consistency checks count as refusal), and a cap on response
bytes. Header values (credentials) are never written to the report."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError, UsageError
from bastion.probe.model import REFUSED_LABEL, Allowance, Model, Output, label_text

if TYPE_CHECKING:
    import pandas

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
RETRY_STATUS = {429, 500, 502, 503, 504}
# answers about the request itself (credentials, address, method), never about its rows:
# stop at once instead of bisecting the batch as refused input
NOT_A_REFUSAL = {401, 403, 404, 405, 407, 410, 411, 414, 415}
SUM_TOLERANCE = 0.005  # per class: class scores rounded to two decimals still sum to about 1
MAX_TIMEOUT = 3600.0


class EndpointError(BastionError):
    """The endpoint failed after its retries, or answered something that is not a prediction."""


class EndpointRefused(EndpointError):
    """The endpoint refused the input (a 4xx other than 429)."""


class _Expired(Exception):
    """The whole-request deadline passed."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON may hold")


def parse_answer(raw: bytes) -> Any:
    """An endpoint's answer as JSON, strictly: NaN and Infinity (which Python's json module
    accepts) are refused, and so is nesting too deep to read."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise EndpointError("the endpoint's response is nested too deeply to read") from None
    except ValueError as exc:
        raise EndpointError(f"the endpoint's response is not strict JSON: {exc}"[:300]) from None


def _is_number(value: Any) -> bool:
    """A finite JSON number (a boolean is not one, although Python's bool is an int; an
    integer too large for a float is not one either)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _host_of(location: str) -> str:
    """Where a redirect points: scheme and host only (a query may carry tokens)."""
    try:
        parts = urllib.parse.urlsplit(location.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an unreadable address"
    if not host:
        return "another path of the same host"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _pointer(document: Any, pointer: str) -> Any:
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise UsageError(f"{pointer!r} is not a JSON pointer (they start with '/')")
    node = document
    for raw in pointer[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            try:
                node = node[int(key)]
            except (ValueError, IndexError):
                raise EndpointError(f"the response has no {pointer}") from None
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise EndpointError(f"the response has no {pointer}")
    return node


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class HttpModel(Model):
    kind = "endpoint"
    positional = False
    budget_hint = "raise --max-queries, or probe fewer rows"

    def __init__(
        self,
        url: str,
        *,
        template: Any,
        classes: Sequence[Any],
        scores: str | None = None,
        labels: str | None = None,
        headers: dict[str, str] | None = None,
        budget: int | None = None,
        batch: int = 64,
        concurrency: int = 4,
        retries: int = 2,
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--endpoint must be an http(s) URL, not {url[:60]!r}")
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"--endpoint {url[:60]!r} is not a valid URL: {exc}") from None
        if not parts.hostname:
            raise UsageError(f"--endpoint {url[:60]!r} names no host")
        if parts.username is not None or parts.password is not None:
            raise UsageError(
                "--endpoint carries a user name or password (user:password@host): give "
                "credentials with --header, which is never written to the report"
            )
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise UsageError(f"--request-timeout must be above 0 and at most {MAX_TIMEOUT:g} s")
        for name, value, low in (("batch", batch, 1), ("concurrency", concurrency, 1)):
            if value < low:
                raise UsageError(f"--{name} must be at least {low}")
        if retries < 0:
            raise UsageError("--retries must be 0 or more")
        if scores is None and labels is None:
            raise UsageError("say where the response holds predictions: --scores or --labels")
        text = json.dumps(template)
        self.per_row = '"$row"' in text
        if not self.per_row and '"$rows"' not in text:
            raise UsageError('the request template holds neither "$rows" nor "$row"')
        # the address as reports and messages show it: no query string (it may carry a token)
        shown = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
        super().__init__(shown, classes, budget)
        self.url = shown
        self.template = template
        self.scores_at = scores
        self.labels_at = labels
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.batch = 1 if self.per_row else batch
        self.concurrency = concurrency
        self.retries = retries
        self.timeout = timeout
        self.requests = 0
        self.retried = 0

    @property
    def gives_scores(self) -> bool:
        return self.scores_at is not None

    def _body(self, rows: list[dict[str, Any]]) -> bytes:
        def fill(node: Any) -> Any:
            if node == "$rows":
                return rows
            if node == "$row":
                return rows[0]
            if isinstance(node, dict):
                return {k: fill(v) for k, v in node.items()}
            if isinstance(node, list):
                return [fill(v) for v in node]
            return node

        return json.dumps(fill(self.template), allow_nan=False).encode("utf-8")

    def _post(self, body: bytes, rows: int, charge: Allowance) -> Any:
        """One request (with its retries: each resends `rows` rows, charged to `charge`), the
        answer parsed strictly. The whole request, from connecting to the last byte of the
        answer, must end within the timeout; a redirect is an error (never followed: the
        headers carry credentials)."""
        delay = 0.2
        problem = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                if not charge.take(rows):
                    raise self.budget_exceeded(rows)
                self.retried += 1
                time.sleep(delay)
                delay *= 2
            with self._lock:
                self.requests += 1
            try:
                status, location, raw = self._exchange(body)
            except _Expired:
                problem = f"no complete answer within {self.timeout:g} s"
                continue
            except OSError as exc:
                problem = str(exc) or type(exc).__name__
                continue
            except http.client.HTTPException as exc:
                problem = f"a broken HTTP answer ({type(exc).__name__})"
                continue
            if 300 <= status < 400:
                raise EndpointError(
                    f"the endpoint answered HTTP {status}, a redirect"
                    + (f" to {_host_of(location)}" if location else "")
                    + "; redirects are not followed (the request's headers carry credentials)",
                    hint="give --endpoint the final address",
                )
            if status in RETRY_STATUS:
                problem = f"HTTP {status}"
                continue
            if status in NOT_A_REFUSAL:
                raise EndpointError(
                    f"the endpoint answered HTTP {status}: the request was not accepted "
                    "whatever its rows (credentials, address or method)",
                    hint="check --endpoint and --header",
                )
            if status >= 400:
                raise EndpointRefused(f"the endpoint answered HTTP {status}")
            if not 200 <= status < 300:
                raise EndpointError(f"the endpoint answered HTTP {status}")
            return parse_answer(raw)
        raise EndpointError(f"{self.url} failed after {self.retries + 1} attempts: {problem}")

    def _exchange(self, body: bytes) -> tuple[int, str | None, bytes]:
        """One POST: status, Location header, body (at most MAX_RESPONSE_BYTES + 1 bytes). A
        timer closes the connection at the deadline, so a slow-dripping answer cannot hold
        the probe longer than the timeout whatever each read waits."""
        connection: http.client.HTTPConnection
        if self._scheme == "https":
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            connection.request("POST", self._path, body=body, headers=self.headers)
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            status, location = response.status, response.getheader("Location")
        except (OSError, http.client.HTTPException):
            if expired.is_set():
                raise _Expired() from None
            raise
        finally:
            timer.cancel()
            connection.close()
        if expired.is_set():
            raise _Expired()
        if len(raw) > MAX_RESPONSE_BYTES and 200 <= status < 300:
            raise EndpointError("the endpoint's response is larger than 8 MiB")
        return status, location, raw

    def _chunk(
        self, rows: list[dict[str, Any]], charge: Allowance
    ) -> tuple[list[str], list[list[float]] | None]:
        document = self._post(self._body(rows), len(rows), charge)
        labels: list[str] | None = None
        scores: list[list[float]] | None = None
        if self.scores_at is not None:
            found = _pointer(document, self.scores_at)
            if self.per_row:
                found = [found]
            if not isinstance(found, list) or len(found) != len(rows):
                raise EndpointError(f"{self.scores_at} does not hold one score per row")
            scores = [self._score(item) for item in found]
        if self.labels_at is not None:
            found = _pointer(document, self.labels_at)
            if self.per_row:
                found = [found]
            if not isinstance(found, list) or len(found) != len(rows):
                raise EndpointError(f"{self.labels_at} does not hold one label per row")
            known = {label_text(c) for c in self.classes}
            for value in found:
                if not (isinstance(value, str) or _is_number(value)) or (
                    label_text(value) not in known
                ):
                    raise EndpointError(
                        f"{self.labels_at} holds {str(value)[:40]!r}, not one of --classes "
                        f"({', '.join(sorted(known))[:80]})"
                    )
            labels = [label_text(v) for v in found]
        if labels is None:
            assert scores is not None
            labels = [self.classes[max(range(len(s)), key=s.__getitem__)] for s in scores]
        return labels, scores

    def _score(self, item: Any) -> list[float]:
        """One row's scores, strictly: finite numbers (not booleans) in [0, 1], one per class
        summing to 1 (within SUM_TOLERANCE per class, for rounded answers)."""
        where = self.scores_at
        if _is_number(item):
            if len(self.classes) != 2:
                raise EndpointError(
                    f"{where} holds one score per row, which names two classes, not "
                    f"{len(self.classes)} (--classes)"
                )
            p = float(item)
            values = [1 - p, p]
            if not 0 <= p <= 1:
                raise EndpointError(f"{where} holds a score {p:g} outside [0, 1]")
            return values
        if not isinstance(item, list) or not item:
            raise EndpointError(f"{where} holds something that is not a score ({_kind(item)})")
        for value in item:
            if not _is_number(value):
                raise EndpointError(f"{where} holds something that is not a score ({_kind(value)})")
            if not 0 <= float(value) <= 1:
                raise EndpointError(f"{where} holds a score {float(value):g} outside [0, 1]")
        values = [float(v) for v in item]
        if len(values) != len(self.classes):
            raise EndpointError(
                f"the endpoint gives {len(values)} scores per row for {len(self.classes)} "
                "classes (--classes)"
            )
        total = math.fsum(values)
        if abs(total - 1) > SUM_TOLERANCE * len(values):
            raise EndpointError(
                f"{where} holds class scores summing to {total:g}, not to 1: not probabilities"
            )
        return values

    def _answer_chunk(
        self, rows: list[dict[str, Any]], charge: Allowance, partial: bool
    ) -> tuple[list[str], list[list[float]] | None, list[bool]]:
        """A chunk's answers; in a partial query a refused chunk is halved and re-sent until
        the refused rows are found (each row sent is charged)."""
        try:
            labels, scores = self._chunk(rows, charge)
            return labels, scores, [False] * len(rows)
        except EndpointRefused:
            if not partial:
                raise
        nan_row = [math.nan] * len(self.classes)
        if len(rows) == 1:
            return [REFUSED_LABEL], [nan_row] if self.gives_scores else None, [True]
        out_labels: list[str] = []
        out_scores: list[list[float]] = []
        out_refused: list[bool] = []
        for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
            if charge.take(len(half)):
                labels, scores, refused = self._answer_chunk(half, charge, partial)
            else:
                labels = [REFUSED_LABEL] * len(half)
                scores = [nan_row] * len(half) if self.gives_scores else None
                refused = [True] * len(half)
            out_labels += labels
            out_scores += scores or []
            out_refused += refused
        return out_labels, out_scores if self.gives_scores else None, out_refused

    def _send(self, frame: pandas.DataFrame, charge: Allowance, partial: bool) -> Output:
        from concurrent.futures import ThreadPoolExecutor

        import numpy as np

        records = [
            {str(k): _plain(v) for k, v in zip(frame.columns, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)
        ]
        chunks = [records[i : i + self.batch] for i in range(0, len(records), self.batch)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
            answers = list(pool.map(lambda c: self._answer_chunk(c, charge, partial), chunks))
        labels = [label for chunk, _, _ in answers for label in chunk]
        refused = np.array([r for _, _, chunk in answers for r in chunk], dtype=bool)
        scores = None
        if self.scores_at is not None:
            flat = [s for _, chunk, _ in answers for s in (chunk or [])]
            scores = np.asarray(flat, dtype=float).reshape(len(labels), len(self.classes))
        return Output(np.array(labels, dtype=object), scores, refused if partial else None)

    def _predict(self, frame: pandas.DataFrame) -> Output:
        return self._send(frame, Allowance(self, None), partial=False)

    def _partial(self, frame: pandas.DataFrame, charge: Allowance) -> Output:
        return self._send(frame, charge, partial=True)

    def raw_query(self, frame: pandas.DataFrame) -> Output:
        return self.query(frame)


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("endpoint (with --endpoint URL)")
    group.add_argument(
        "--request",
        default='{"rows": "$rows"}',
        metavar="JSON",
        help='Request template; "$rows" is a list of {feature: value} rows, "$row" one row '
        "[default: %(default)s].",
    )
    group.add_argument("--scores", metavar="POINTER", help="JSON pointer to the scores.")
    group.add_argument("--labels", metavar="POINTER", help="JSON pointer to the labels.")
    group.add_argument(
        "--classes",
        metavar="LIST",
        help="The classes, in score order (comma-separated), for an endpoint or a booster "
        "file [default: the data's labels, sorted, as --label-map spells them; 0,1 for a "
        "booster].",
    )
    group.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="An HTTP header to send (credentials; never written to reports).",
    )
    group.add_argument(
        "--max-queries",
        type=_whole(1, 10**9),
        metavar="N",
        help="Total query budget: every row sent counts, retries included.",
    )
    group.add_argument(
        "--concurrency", type=_whole(1, 64), default=4, metavar="N", help="[default: 4]"
    )
    group.add_argument("--retries", type=_whole(0, 10), default=2, metavar="N", help="[default: 2]")
    group.add_argument(
        "--request-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="Deadline of one whole request, connection to last byte [default: 10].",
    )
    group.add_argument(
        "--batch",
        type=_whole(1, 10_000),
        default=64,
        metavar="N",
        help="Rows per request [default: 64].",
    )


def _whole(low: int, high: int) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low} and {high:,}")
        return value

    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"{text} is not a time above 0 and at most {MAX_TIMEOUT:g} seconds"
        )
    return value


def endpoint_model(args: argparse.Namespace, data_labels: Sequence[str] = ()) -> HttpModel:
    try:
        template = json.loads(args.request, parse_constant=_refuse_constant)
    except RecursionError:
        raise UsageError("--request is nested too deeply") from None
    except ValueError as exc:
        raise UsageError(f"--request is not JSON: {exc}") from None
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header takes 'NAME: VALUE', not {item[:40]!r}")
        headers[name.strip()] = value.strip()
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    else:
        classes = sorted(set(data_labels))
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise UsageError(
            f"an endpoint's classes are two or more distinct names in score order, not "
            f"{','.join(classes)[:80]!r}",
            hint="--classes bad,good",
        )
    return HttpModel(
        args.endpoint,
        template=template,
        classes=classes,
        scores=args.scores,
        labels=args.labels,
        headers=headers,
        budget=args.max_queries,
        batch=args.batch,
        concurrency=args.concurrency,
        retries=args.retries,
        timeout=args.request_timeout,
    )
