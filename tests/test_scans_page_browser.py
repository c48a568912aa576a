"""The consumer page in a real browser: headless Chromium at 360×740 (a small phone) shows the
verdict without JavaScript. Asserts on the DOM text and layout, not on glyphs (CJK glyphs need a
font on the machine; the screenshot is kept for a person to look at)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from tests.scans_support import activated_codes

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# (The page has no script at all, asserted in test_scans_resolver; --dump-dom itself needs scripting on.)


def _browser():
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("CI=true and no chromium on PATH: the page's browser test must run in CI")
        pytest.skip("no chromium on PATH (Debian: apt install chromium); set CHROMIUM=/path to use another")
    return CHROMIUM


@pytest.fixture
def served(app):
    """The app on a real local port, in a thread (the test's session is shared with it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server("127.0.0.1", port, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def _chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([_browser(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=90, cwd=tmp_path)


def test_the_page_shows_the_verdict_at_360_px_without_javascript(make, session, served, tmp_path):
    operator = make.operator(name="新会测试陈皮有限公司")
    [code] = activated_codes(make, session, 1, operator)
    url = f"{served}/V/{code}"
    dom = _chromium(["--window-size=360,740", "--dump-dom", url], tmp_path)
    assert dom.returncode == 0 and dom.stdout, dom.stderr[-3000:]
    html = dom.stdout
    assert 'id="verdict"' in html and 'data-verdict="genuine"' in html
    assert "正品" in html and "新会测试陈皮有限公司" in html and operator.credit_code in html
    assert "查询记录" in html and "第 1 次" in html
    shot = tmp_path / "scan-page.png"
    r = _chromium(["--window-size=360,740", f"--screenshot={shot}", url], tmp_path)
    assert r.returncode == 0 and shot.exists(), r.stderr[-1500:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (360, 740)
        # The verdict banner (green for genuine) fills the width near the top of the screen.
        top = img.convert("RGB").crop((0, 40, 360, 160))
        greens = sum(1 for (r_, g, b) in top.getdata() if g > 100 and r_ < 80 and b < 80)
        assert greens > 360 * 120 * 0.3, greens
    keep = os.environ.get("SCAN_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "scan-page-genuine.png"))


def test_a_warning_page_is_red_and_says_beware(make, session, served, tmp_path):
    [code] = activated_codes(make, session, 1, state="stolen", lot=False)
    shot = tmp_path / "warn.png"
    r = _chromium(["--window-size=360,740", f"--screenshot={shot}", f"{served}/v/{code.lower()}"], tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    from PIL import Image

    with Image.open(shot) as img:
        top = img.convert("RGB").crop((0, 40, 360, 160))
        reds = sum(1 for (r_, g, b) in top.getdata() if r_ > 150 and g < 80 and b < 80)
        assert reds > 360 * 120 * 0.3, reds
    keep = os.environ.get("SCAN_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "scan-page-stolen.png"))
