"""The dashboard's HTTP behaviour without a browser (cookies off loopback, Host checks, forms,
throttling, headers) and its queries on a generated store: every filter's pages, walked by
cursor, hold exactly the rows SQL selects, newest first, with no row twice."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.findings import Severity
from bastion.ui.queries import FindingFilter, History
from bastion.ui.sessions import Identity

starlette_testclient = pytest.importorskip("starlette.testclient")
ROOT = Path(__file__).resolve().parents[2]


class Keys:
    """A verifier with two fixed tokens (the app's KeyVerifier interface)."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()

    def verify(self, token: str) -> Identity | None:
        if token == "good-token":
            return Identity(key_id="0123456789ab", tenant=None, scopes=frozenset({"audit:read"}))
        return None

    def active(self, key_id: str) -> bool:
        return key_id not in self.revoked


@pytest.fixture(scope="module")
def scale_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("store_scale", ROOT / "bench" / "store_scale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path_factory.mktemp("scale") / "history.sqlite3"
    module.build(path, runs=120, findings=6_000)
    return path


def _client(store: Path, host: str = "127.0.0.1", scheme: str = "http", **kwargs: Any) -> Any:
    from bastion.ui.app import create_app

    app = create_app(store, Keys(), host=host, **kwargs)
    return starlette_testclient.TestClient(app, base_url=f"{scheme}://{host}")


def _login(client: Any, origin: str = "http://127.0.0.1") -> Any:
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post(
        "/login",
        data={"csrf": csrf[1], "token": "good-token"},
        headers={"origin": origin},
        follow_redirects=False,
    )


def test_off_loopback_cookies_are_secure_and_hosts_are_checked(scale_store: Path) -> None:
    client = _client(scale_store, host="10.1.2.3", scheme="https")  # TLS in front
    done = _login(client, origin="https://10.1.2.3")
    assert done.status_code == 303
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("__Host-bastion_ui=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    assert "strict-transport-security" in done.headers
    rebinding = _client(scale_store).get("/login", headers={"host": "attacker.example"})
    assert rebinding.status_code == 400


def test_forms_are_checked(scale_store: Path) -> None:
    client = _client(scale_store)
    assert client.get("/findings", follow_redirects=False).headers["location"] == "/login"
    client.get("/login")
    no_token = client.post(
        "/login", data={"token": "good-token"}, headers={"origin": "http://127.0.0.1"}
    )
    assert no_token.status_code == 400
    forged = client.post(
        "/login", data={"csrf": "x", "token": "good-token"}, headers={"origin": "http://x.test"}
    )
    assert forged.status_code == 403
    big = client.post(
        "/login",
        content=b"token=" + b"a" * 20_000,
        headers={"origin": "http://127.0.0.1", "content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 400
    for _ in range(12):
        last = client.post(
            "/login", data={"csrf": "x", "token": "bad"}, headers={"origin": "http://127.0.0.1"}
        )
    assert last.status_code == 429


def test_headers_on_pages_and_static_files(scale_store: Path) -> None:
    client = _client(scale_store)
    assert _login(client).status_code == 303
    page = client.get("/runs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "server" not in page.headers
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "content-security-policy" in script.headers
    assert script.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/findings/999999999").status_code == 404
    assert client.get("/runs/999999999").status_code == 404


def test_filters_drop_what_is_not_a_filter() -> None:
    parsed = FindingFilter.parse(
        {
            "stage": "data' OR 1=1 --",
            "severity": "HIGH",
            "rule": "PKL001; DROP TABLE runs",
            "taxonomy": "<script>",
            "gate": "failing",
            "run": "12a",
            "digest": "sha256:" + "a" * 64,
        }
    )
    assert parsed.model_dump() == {
        "stage": None,
        "severity": None,
        "rule": None,
        "taxonomy": None,
        "gate": "failing",
        "run": None,
        "digest": "sha256:" + "a" * 64,
    }
    assert FindingFilter.parse({"taxonomy": "GOVERN 6.1"}).taxonomy == "GOVERN 6.1"


def _all_pages(history: History, flt: FindingFilter) -> list[int]:
    ids, cursor = [], None
    for _ in range(1000):
        page = history.findings(flt, cursor, limit=37)
        assert not page.too_slow
        ids += [r.id for r in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


def _expected(store: Path, where: str, parameters: tuple[Any, ...]) -> list[int]:
    db = sqlite3.connect(store)
    rows = db.execute(f"SELECT id FROM findings WHERE {where} ORDER BY id DESC", parameters)
    found = [r[0] for r in rows]
    db.close()
    return found


def test_every_filter_pages_through_exactly_its_rows(scale_store: Path) -> None:
    history = History(scale_store)
    tagged = sorted(
        r
        for r, tags in history.rule_tags().items()
        if any(t == "AML.T0010" or t.startswith("AML.T0010.") for t in tags)
    )
    db = sqlite3.connect(scale_store)
    rule = db.execute("SELECT rule_id FROM findings GROUP BY 1 ORDER BY COUNT(*) DESC").fetchone()[
        0
    ]
    run = db.execute("SELECT run_id FROM findings GROUP BY 1 ORDER BY COUNT(*) DESC").fetchone()[0]
    db.close()
    high = Severity.HIGH.rank
    cases = [
        (FindingFilter(), "1", ()),
        (FindingFilter(severity="high"), "severity >= ?", (high,)),
        (FindingFilter(stage="artifact"), "stage = ?", ("artifact",)),
        (FindingFilter(rule=rule), "rule_id = ?", (rule,)),
        (FindingFilter(run=run), "run_id = ?", (run,)),
        (FindingFilter(gate="failing"), "gate = ?", ("failing",)),
        (
            FindingFilter(taxonomy="AML.T0010"),
            f"rule_id IN ({', '.join('?' * len(tagged))})",
            tuple(tagged),
        ),
        (
            FindingFilter(severity="medium", stage="data", gate="failing"),
            "severity >= ? AND stage = ? AND gate = ?",
            (Severity.MEDIUM.rank, "data", "failing"),
        ),
        (
            FindingFilter(taxonomy="AML.T0010", severity="medium"),
            f"rule_id IN ({', '.join('?' * len(tagged))}) AND severity >= ?",
            (*tagged, Severity.MEDIUM.rank),
        ),
    ]
    for flt, where, parameters in cases:
        expected = _expected(scale_store, where, parameters)
        assert expected, flt  # the generated store exercises every case
        assert _all_pages(history, flt) == expected, flt
        total = history.findings(flt).total
        assert total is None or total == len(expected), flt
    history.close()


def test_a_query_past_its_budget_says_so(scale_store: Path) -> None:
    slow = History(scale_store, budget_s=0.0)
    page = slow.findings(FindingFilter(gate="waived"))  # none: the walk reads every row
    assert page.too_slow and page.rows == ()
    slow.close()


def test_the_generated_store_carries_planted_markup_escaped(scale_store: Path) -> None:
    client = _client(scale_store)
    assert _login(client).status_code == 303
    db = sqlite3.connect(scale_store)
    planted = db.execute(
        "SELECT id FROM findings WHERE message LIKE '%<script>%' ORDER BY id LIMIT 1"
    ).fetchone()
    db.close()
    if planted is None:
        pytest.skip("no planted finding in this small store")
    page = client.get(f"/findings/{planted[0]}")
    assert "&lt;script&gt;window.bastion_xss_marker=1&lt;/script&gt;" in page.text
    assert "<script>window" not in page.text
