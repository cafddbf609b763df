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

import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError, UsageError
from bastion.probe.model import Model, Output, label_text

if TYPE_CHECKING:
    import argparse

    import pandas

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
RETRY_STATUS = {429, 500, 502, 503, 504}


class EndpointError(BastionError):
    """The endpoint failed after its retries, or answered something that is not a prediction."""


class EndpointRefused(EndpointError):
    """The endpoint refused the input (a 4xx other than 429)."""


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
        if scores is None and labels is None:
            raise UsageError("say where the response holds predictions: --scores or --labels")
        text = json.dumps(template)
        self.per_row = '"$row"' in text
        if not self.per_row and '"$rows"' not in text:
            raise UsageError('the request template holds neither "$rows" nor "$row"')
        super().__init__(url, classes, budget)
        self.url = url
        self.template = template
        self.scores_at = scores
        self.labels_at = labels
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.batch = 1 if self.per_row else max(1, batch)
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
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

    def _post(self, body: bytes) -> Any:
        import urllib.error
        import urllib.request

        delay = 0.2
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=self.headers)
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read(MAX_RESPONSE_BYTES + 1)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS:
                    raise EndpointRefused(f"the endpoint answered HTTP {exc.code}") from None
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            else:
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise EndpointError("the endpoint's response is larger than 8 MiB")
                try:
                    return json.loads(raw)
                except ValueError:
                    raise EndpointError("the endpoint's response is not JSON") from None
            if attempt < self.retries:
                self.retried += 1
                time.sleep(delay)
                delay *= 2
        raise EndpointError(f"{self.url} failed after {self.retries + 1} attempts: {problem}")

    def _chunk(self, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[float]] | None]:
        document = self._post(self._body(rows))
        labels: list[str] | None = None
        scores: list[list[float]] | None = None
        if self.scores_at is not None:
            found = _pointer(document, self.scores_at)
            if self.per_row:
                found = [found]
            if not isinstance(found, list) or len(found) != len(rows):
                raise EndpointError(f"{self.scores_at} does not hold one score per row")
            scores = []
            for item in found:
                if isinstance(item, int | float):
                    p = float(item)
                    scores.append([1 - p, p])
                elif isinstance(item, list) and all(isinstance(v, int | float) for v in item):
                    scores.append([float(v) for v in item])
                else:
                    raise EndpointError(f"{self.scores_at} holds something that is not a score")
        if self.labels_at is not None:
            found = _pointer(document, self.labels_at)
            if self.per_row:
                found = [found]
            if not isinstance(found, list) or len(found) != len(rows):
                raise EndpointError(f"{self.labels_at} does not hold one label per row")
            labels = [label_text(v) for v in found]
        if labels is None:
            assert scores is not None
            labels = [self.classes[max(range(len(s)), key=s.__getitem__)] for s in scores]
        return labels, scores

    def _predict(self, frame: pandas.DataFrame) -> Output:
        from concurrent.futures import ThreadPoolExecutor

        import numpy as np

        records = [
            {str(k): _plain(v) for k, v in zip(frame.columns, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)
        ]
        chunks = [records[i : i + self.batch] for i in range(0, len(records), self.batch)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
            answers = list(pool.map(self._chunk, chunks))
        labels = [label for chunk, _ in answers for label in chunk]
        scores = None
        if self.scores_at is not None:
            flat = [s for _, chunk in answers for s in (chunk or [])]
            scores = np.asarray(flat, dtype=float)
            if scores.shape[1] != len(self.classes):
                raise EndpointError(
                    f"the endpoint gives {scores.shape[1]} scores per row for "
                    f"{len(self.classes)} classes (--classes)"
                )
        return Output(np.array(labels, dtype=object), scores)

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
    group.add_argument("--max-queries", type=int, metavar="N", help="Total query budget.")
    group.add_argument("--concurrency", type=int, default=4, metavar="N", help="[default: 4]")
    group.add_argument("--retries", type=int, default=2, metavar="N", help="[default: 2]")
    group.add_argument(
        "--request-timeout", type=float, default=10.0, metavar="S", help="[default: 10]"
    )
    group.add_argument("--batch", type=int, default=64, metavar="N", help="Rows per request.")


def endpoint_model(args: argparse.Namespace, data_labels: Sequence[str] = ()) -> HttpModel:
    try:
        template = json.loads(args.request)
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
    if args.max_queries is not None and args.max_queries < 1:
        raise UsageError("--max-queries must be at least 1")
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
