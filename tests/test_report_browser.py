"""The HTML report in a real browser: headless Chromium opens it offline, with no console
errors, every image decodes, and the screenshot is not blank.

Needs the Debian package `chromium` (or $ANONBENCH_CHROMIUM pointing at a Chromium binary);
skipped otherwise. With Playwright for Python installed, the page is driven through it (console
messages by type, page errors, failed requests, image decoding, a full-page screenshot);
without it, Chromium's own --screenshot and console log on stderr are used. Set
$ANONBENCH_REPORT_SCREENSHOT to a folder to keep the screenshots (e.g. as CI artifacts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures" / "report_run"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    env = os.environ.get("ANONBENCH_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if p := shutil.which(name):
            return p
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (apt-get install -y chromium, or set "
    "ANONBENCH_CHROMIUM)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from anonbench.reports.html import write_report

    return write_report(
        [FIX / "lfw", FIX / "celeba"], tmp_path_factory.mktemp("browser") / "report.html"
    )


def _assert_not_blank(png: Path) -> None:
    from PIL import Image, ImageStat

    im = Image.open(png).convert("RGB")
    assert im.size[0] >= 800 and im.size[1] >= 600
    std = ImageStat.Stat(im.convert("L")).stddev[0]
    assert std > 20, f"screenshot looks blank (grey-level std {std:.1f})"
    colors = im.resize((400, 400 * im.size[1] // im.size[0])).getcolors(1 << 20) or []
    assert len(colors) > 200, "screenshot has almost no distinct colours"


def _keep(png: Path) -> None:
    dest = os.environ.get("ANONBENCH_REPORT_SCREENSHOT")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(dest) / png.name)


def test_report_in_chromium_playwright(report, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python not installed (pip install playwright)"
    )
    problems: list[str] = []
    png = tmp_path / "report-playwright.png"
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=FLAGS,
            viewport={"width": 1360, "height": 900},
        )
        try:
            page = ctx.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(report.as_uri(), wait_until="load")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.alt)"
            )
            n_images = page.evaluate("document.images.length")
            title = page.title()
            page.screenshot(path=str(png), full_page=True)
        finally:
            ctx.close()
    assert not problems, problems
    assert broken == [] and n_images >= 10
    assert "anonbench report" in title
    _assert_not_blank(png)
    _keep(png)


def test_report_in_chromium_cli(report, tmp_path):
    png = tmp_path / "report-cli.png"
    cmd = [
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        "--window-size=1360,2400",
        f"--screenshot={png}",
        report.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), r.stderr[-2000:]
    # the report has no script: any console line (a CSP refusal, an error) is a problem
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    _assert_not_blank(png)
    _keep(png)


_WIDTHS = """() => {
  const vw = document.documentElement.clientWidth;
  const over = Array.from(document.querySelectorAll('table')).map(t => {
    const r = t.getBoundingClientRect();
    const card = (t.closest('section') || document.body).getBoundingClientRect();
    return {right: Math.round(r.right), width: Math.round(r.width), card: Math.round(card.right)};
  }).filter(x => x.width > vw || x.right > x.card + 1);
  return {vw: vw, page: document.documentElement.scrollWidth, over: over};
}"""


@pytest.mark.parametrize("width", [1400, 420])
def test_report_fits_its_viewport(report, tmp_path, width):
    """At 1400 and 420 px no table is wider than the viewport or runs past its card, and the
    page does not scroll sideways; the screenshots are kept with $ANONBENCH_REPORT_SCREENSHOT
    (docs/report_1400.jpg and docs/report_420.jpg come from here)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python not installed (pip install playwright)"
    )
    png = tmp_path / f"report_{width}.png"
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=FLAGS,
            viewport={"width": width, "height": 900},
        )
        try:
            page = ctx.new_page()
            page.goto(report.as_uri(), wait_until="load")
            got = page.evaluate(_WIDTHS)
            page.screenshot(path=str(png), full_page=True)
        finally:
            ctx.close()
    assert got["page"] <= got["vw"], got
    assert got["over"] == [], got
    _keep(png)
