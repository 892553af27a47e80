"""The report in a real headless Chromium: no console error, no request beyond the file itself,
every in-page anchor resolves, no script from the store runs, and a screenshot that is not blank.

The screenshots stay in the test's temporary directory (pytest keeps the last runs' directories),
the CI artefact of this test.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from rlaudit.reports.html import write_report
from tests.reports.hostile import hostile_audit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.environ.get("CI"):  # in CI (.ci/run installs chromium, the test extra playwright) it must run
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)
    pytest.importorskip("playwright.sync_api")
from playwright import sync_api  # noqa: E402


def _open(path, shot, viewport=(1280, 900)):
    console, requests, dialogs, errors = [], [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.as_uri(), wait_until="load")
            unresolved = page.evaluate("""() => Array.from(document.querySelectorAll('a[href^="#"]'))
                .map(a => decodeURIComponent(a.getAttribute('href').slice(1)))
                .filter(id => !document.getElementById(id))""")
            finding_ids = page.evaluate("""() => Array.from(document.querySelectorAll('section.finding'))
                .map(s => s.id)""")
            index_links = page.evaluate("""() => Array.from(document.querySelectorAll('nav.index a'))
                .map(a => a.getAttribute('href').slice(1))""")
            # following a finding's link scrolls it into view
            if finding_ids:
                page.click(f'nav.index a[href="#{finding_ids[-1]}"]')
                top = page.evaluate(f"() => document.getElementById({finding_ids[-1]!r}).getBoundingClientRect().top")
                assert abs(top) < 5
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(shot))
            page.screenshot(path=str(shot.with_name(shot.stem + "-full.png")), full_page=True)
        finally:
            browser.close()
    return console, requests, dialogs, errors, unresolved, finding_ids, index_links


def _not_blank(png) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float(pixels.std())


def test_report_in_chromium(audit, tmp_path):
    path = write_report(hostile_audit(audit), tmp_path / "report.html")
    shot = tmp_path / "report.png"
    console, requests, dialogs, errors, unresolved, finding_ids, index_links = _open(path, shot)
    assert [m for m in console if m[0] in ("error", "warning")] == []
    assert errors == []
    assert requests == [path.as_uri()], requests  # nothing but the file itself
    assert dialogs == []  # no script from the store ran
    assert unresolved == []
    assert len(finding_ids) == len(audit.findings) + 1 and set(finding_ids) <= set(index_links)
    assert _not_blank(shot) > 10
    assert _not_blank(shot.with_name("report-full.png")) > 10
