"""Draw the docs' and the README's pictures from the real dashboard in Chromium: ``make screenshots``.

Starts ``streamlit run app.py`` from this checkout on a free loopback port, opens each page in
headless Chromium (Debian's, as the end-to-end tests do), loads the bundled photographs and
writes ``docs/images/<page>.png``. It uses the weights this machine has; where the pretrained
ones cannot be fetched it presses the dashboard's "Untrained weights (a demo)", and the pictures
say so in their banner. ``docs/images/screenshots.json`` records the SHA-256 of the dashboard's
and the figures' sources they were drawn from: a test fails when those change and the pictures
are not drawn again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
STAMP = IMAGES / "screenshots.json"
SOURCES = ("sevis/app", "sevis/figures")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'


def sources_digest() -> str:
    """The SHA-256 of every Python file the pictures are drawn by, in path order."""
    digest = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def start(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SEVIS_CACHE_DIR": str(home / "cache"), "SEVIS_UPLOAD_DIR": str(home / "uploads")}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    log = open(home / "server.log", "wb")  # noqa: SIM115 - the server keeps it open
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the dashboard did not start:\n{(home / 'server.log').read_text()[-2000:]}")


def settle(page, charts: bool = True, timeout: float = 300) -> None:
    """Wait until no script runs, nothing is stale and the chart count (at least one, with
    ``charts``) holds for a second."""
    deadline, steady, last = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        state = page.evaluate(
            """([chart]) => [document.querySelectorAll(chart).length,
                document.querySelectorAll('[data-stale="true"]').length,
                document.querySelectorAll('[data-testid="stStatusWidget"]').length]""",
            [CHART],
        )
        steady = steady + 1 if state == last and state[1:] == [0, 0] else 0
        last = state
        if steady >= 4 and (state[0] > 0 or not charts):
            return
        page.wait_for_timeout(250)
    raise SystemExit(f"the page did not settle: {last}")


def weights_chosen(page) -> None:
    """Press "Untrained weights (a demo)" for every model whose weights are not here."""
    page.wait_for_timeout(1500)
    while (demo := page.get_by_role("button", name="Untrained weights (a demo)")).count():
        demo.first.click()
        page.wait_for_timeout(1500)
        settle(page)


def main() -> int:
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="sevis-screenshots-"))
    photos = {}
    for name, file in (("cat", "chelsea.png"), ("cup", "coffee.png")):
        original = Image.open(ROOT / "assets" / file).convert("RGB")
        for i, image in enumerate((original, ImageOps.mirror(original))):
            photos.setdefault(name, []).append(home / f"{name}{i + 1}.png")
            image.save(photos[name][-1])
    process, url = start(home)
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(url)
            page.get_by_role("heading", name="Images").wait_for()
            weights_chosen(page)
            settle(page)
            page.screenshot(path=str(IMAGES / "images.png"))

            page.get_by_role("link", name="Classes").click()
            page.get_by_role("heading", name="Classes").wait_for()
            uploaders = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
            uploaders.nth(0).set_input_files([str(p) for p in photos["cat"]])
            settle(page)
            uploaders.nth(1).set_input_files([str(p) for p in photos["cup"]])
            settle(page)
            page.locator(CHART).first.scroll_into_view_if_needed()
            page.screenshot(path=str(IMAGES / "classes.png"))

            page.get_by_role("link", name="Channels").click()
            page.get_by_role("heading", name="Channels").wait_for()
            settle(page, charts=False)
            page.screenshot(path=str(IMAGES / "channels.png"))

            page.get_by_text("Both", exact=True).click()
            page.get_by_role("link", name="SE vs SGE").click()
            page.get_by_role("heading", name="SE vs SGE").wait_for()
            weights_chosen(page)
            settle(page)
            page.screenshot(path=str(IMAGES / "compare.png"))
            browser.close()
    finally:
        process.terminate()
        process.wait(30)
    STAMP.write_text(json.dumps({"sources": list(SOURCES), "sha256": sources_digest()}, indent=1) + "\n")
    print(f"wrote {', '.join(sorted(p.name for p in IMAGES.glob('*.png')))} to {IMAGES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
