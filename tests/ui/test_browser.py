"""The dashboard in a real browser: Debian's Chromium driven by Playwright (no browser download;
`make test` installs the `chromium` package when /usr/bin/chromium is missing). One browser for
the module, a fresh profile folder, nothing from the network.

Log in, navigate every page, filter, open a finding, follow lineage; the Content Security
Policy, cookies and CSRF as the browser sees them; and the planted strings (a pickle global
named `<script>…`, a file name with markup, a `javascript:` URL) shown as text and never run.
Screenshots of every page are saved in the folder printed at the end of the run
(BASTION_UI_SCREENSHOTS to choose it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.ui_support import MARKER, SCRIPT_GLOBAL, Served, announce_screenshots, serve

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path(os.environ.get("BASTION_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():  # pragma: no cover - make test installs it
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLAG = MARKER.replace("-", "_")
PAGES = {
    "overview": "/",
    "inventory": "/inventory",
    "inventory-datasets": "/inventory?kind=dataset",
    "runs": "/runs",
    "findings": "/findings",
    "trends": "/trends",
    "lineage": "/lineage",
    "guard": "/guard",
    "compliance": "/compliance",
}
# records CSP violations and any dialog the page opens, before the page's own scripts run
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="module")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("BASTION_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    announce_screenshots(request.config, folder)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1360, "height": 900},
            service_workers="block",
        )
        context.set_default_timeout(10_000)
        context.add_init_script(WATCH)
        # nothing may leave the machine: any request off 127.0.0.1 fails the test
        outside: list[str] = []

        def only_local(route: Any) -> None:
            url = route.request.url
            if url.startswith(("http://127.0.0.1:", "data:", "about:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        context.route("**/*", only_local)
        context.outside = outside
        try:
            yield context
        finally:
            context.close()
    assert not outside, f"requests left the machine: {outside}"


def _page(browser: Any) -> Any:
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and page.errors.append(msg.text))
    page.on(
        "dialog", lambda dialog: (page.errors.append("dialog: " + dialog.message), dialog.dismiss())
    )
    return page


def _login(browser: Any, served: Served, token: str) -> Any:
    browser.clear_cookies()  # one cookie jar per browser profile: start logged out
    page = _page(browser)
    page.goto(served.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def _inert(page: Any) -> None:
    """Nothing planted ran, no dialog opened, no CSP violation, no script error."""
    assert page.evaluate(f"typeof window.{FLAG}") == "undefined"
    assert page.evaluate("window.__violations") == []
    assert page.errors == []
    assert page.locator("a[href^='javascript:' i]").count() == 0
    sources = page.eval_on_selector_all("script", "els => els.map(e => e.src || 'INLINE')")
    assert all(re.match(r"^http://127\.0\.0\.1:\d+/static/", s) for s in sources), sources


@pytest.fixture(scope="module")
def reader(browser: Any, served: Served) -> Iterator[Any]:
    page = _login(browser, served, served.reader)
    yield page
    page.close()


def test_login_refuses_bad_tokens_and_sets_strict_cookies(browser: Any, served: Served) -> None:
    page = _page(browser)
    page.goto(served.url + "/findings")
    assert page.url.endswith("/login")
    for bad in ("not-a-key", served.predict, served.reader[:-2] + "xx"):
        page.fill("#token", bad)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "not valid for the dashboard" in page.content()
    # the refused logins are 401 documents, which Chromium logs as errors; nothing else may be
    assert all("status of 401" in e for e in page.errors), page.errors
    page.errors.clear()
    _inert(page)
    page.fill("#token", served.reader)
    page.click("button[type=submit]")
    page.wait_for_url(served.url + "/")
    cookies = {c["name"]: c for c in browser.cookies(served.url)}
    session = cookies["bastion_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not session["secure"]  # loopback: plain HTTP (Secure off loopback: test_security)
    assert "bastion_ui_login" not in cookies
    assert page.evaluate("document.cookie") == ""  # HttpOnly: not readable by script
    page.close()


def test_every_page_renders_inert_with_screenshots(
    reader: Any, served: Served, screenshots: Path
) -> None:
    for name, path in PAGES.items():
        response = reader.goto(served.url + path)
        assert response.status == 200, name
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert reader.locator("h1").count() == 1
        reader.wait_for_load_state("networkidle")
        _inert(reader)
        reader.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    details = {
        "lineage-graph": f"/lineage?digest={served.built['model_digest']}",
        "run": f"/runs/{served.built['runs']['system']}",
        "finding": "/findings/1",
    }
    for name, path in details.items():
        assert reader.goto(served.url + path).status == 200, name
        reader.wait_for_load_state("networkidle")
        _inert(reader)
        reader.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_charts_draw_from_same_origin_script(reader: Any, served: Served) -> None:
    reader.goto(served.url + "/trends")
    reader.wait_for_selector("[data-chart='severity'][data-rendered='true'] canvas")
    drawn = reader.locator("[data-rendered='true']").count()
    assert drawn == 5  # severity, stage, runs, drift, guard decisions
    reader.goto(served.url + "/guard")
    reader.wait_for_selector("[data-chart='latency'][data-rendered='true'] canvas")
    assert "blocked" in reader.locator(".cards").inner_text()
    assert reader.locator("table.events").count() == 2  # alerts and the latest decisions
    _inert(reader)


def test_filter_findings(reader: Any, served: Served) -> None:
    reader.goto(served.url + "/findings")
    everything = reader.locator("table.findings tbody tr").count()
    reader.select_option("select[name=severity]", "high")
    reader.click("#finding-filters button[type=submit]")
    reader.wait_for_url(re.compile(r".*severity=high.*"))
    severities = reader.locator("table.findings tbody tr td:nth-child(3)").all_inner_texts()
    assert severities and set(severities) <= {"high", "critical"}
    assert len(severities) < everything
    reader.fill("input[name=taxonomy]", "AML.T0011.000")
    reader.select_option("select[name=severity]", "")
    reader.click("#finding-filters button[type=submit]")
    rules = set(reader.locator("table.findings tbody tr td:nth-child(4)").all_inner_texts())
    assert rules and rules <= {"PKL001", "PKL002", "PKL003", "PKL004", "PKL005", "PKL006"}
    reader.select_option("select[name=stage]", "data")
    reader.click("#finding-filters button[type=submit]")
    assert "No findings." in reader.locator("main").inner_text()
    _inert(reader)


def test_open_the_planted_finding(reader: Any, served: Served) -> None:
    reader.goto(served.url + "/findings?rule=PKL001")
    link = reader.locator("td.message a", has_text="window.bastion_xss_marker=1")
    assert link.count() == 1
    link.click()
    reader.wait_for_url(re.compile(r".*/findings/\d+$"))
    shown = reader.locator("main").inner_text()
    assert SCRIPT_GLOBAL in shown  # the markup is shown as text...
    assert "<img src=x onerror=" in shown  # ...and so is the file name
    assert "javascript:window.bastion_xss_marker=3" in shown
    assert reader.locator("main script, main img, main iframe").count() == 0
    assert "Evidence" in shown and "Remediation" in shown
    _inert(reader)


def test_waivers_show_their_expiry(reader: Any, served: Served) -> None:
    reader.goto(f"{served.url}/runs/{served.built['runs']['system']}")
    waivers = reader.locator("table.waivers").inner_text()
    assert "days left" in waivers and "expired 3 day(s) ago" in waivers
    assert reader.locator("table.findings .g-waived").count() >= 1


def test_follow_lineage(reader: Any, served: Served) -> None:
    reader.goto(served.url + "/")
    model = served.built["model_digest"]
    reader.click(f"table.posture a[href*='{model[7:20]}']")
    reader.wait_for_url(re.compile(r".*/lineage\?digest=.*"))
    nodes = reader.locator("svg#lineage-graph g.node")
    assert nodes.count() >= 2  # the model and the dataset it was trained on
    names = reader.locator("svg#lineage-graph g.node title").all_text_contents()
    assert any("<img src=x onerror=" in n for n in names), names  # markup shown as text
    dataset = reader.locator("svg#lineage-graph g.node.k-dataset", has_text="train.csv")
    digest = dataset.get_attribute("data-digest")
    dataset.hover()
    assert reader.locator("svg#lineage-graph g.edge.hot").count() >= 1
    dataset.click()
    reader.wait_for_url(re.compile(r".*digest=" + re.escape(digest.replace(":", "%3A"))))
    assert reader.locator("svg#lineage-graph g.node.focus").get_attribute("data-digest") == digest
    _inert(reader)


def test_inline_script_is_blocked_by_the_policy(reader: Any, served: Served) -> None:
    reader.goto(served.url + "/findings")
    reader.evaluate(
        "() => { const s = document.createElement('script');"
        f" s.textContent = 'window.{FLAG} = 9'; document.body.appendChild(s); }}"
    )
    reader.wait_for_function("window.__violations.length > 0")
    assert reader.evaluate(f"typeof window.{FLAG}") == "undefined"
    assert any("script-src" in v for v in reader.evaluate("window.__violations"))
    reader.evaluate("window.__violations = []")
    reader.errors.clear()


def test_csrf_and_origin_checks(browser: Any, served: Served) -> None:
    page = _login(browser, served, served.reader)
    api = browser.request
    refused = api.post(
        served.url + "/logout", form={"csrf": "wrong"}, headers={"origin": served.url}
    )
    assert refused.status == 403 and "CSRF" in refused.text()
    no_origin = api.post(served.url + "/logout", form={"csrf": "wrong"})
    assert no_origin.status == 403
    forged = api.post(
        served.url + "/logout", form={"csrf": "x"}, headers={"origin": "http://evil.example"}
    )
    assert forged.status == 403
    login_forged = api.post(
        served.url + "/login",
        form={"csrf": "x", "token": served.reader},
        headers={"origin": "http://evil.example"},
    )
    assert login_forged.status == 403
    page.goto(served.url + "/runs")
    assert page.url.endswith("/runs")  # still logged in after the refused attempts
    page.click("header form.logout button")
    page.wait_for_url(served.url + "/login")
    page.goto(served.url + "/runs")
    assert page.url.endswith("/login")
    page.close()


def test_audit_scope_and_revocation(browser: Any, served: Served) -> None:
    page = _login(browser, served, served.admin)
    response = page.goto(served.url + "/guard")
    assert response.status == 403
    assert "audit:read" in page.locator("main").inner_text()
    assert page.goto(served.url + "/findings").status == 200
    key_id = served.admin.split("_")[1]
    served.keys.revoke(key_id)
    page.goto(served.url + "/findings")
    assert page.url.endswith("/login")  # revoking the key ended its session
    page.close()
