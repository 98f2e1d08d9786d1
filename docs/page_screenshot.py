"""Redraw `docs/page.png`: the page at / reading three synthetic house numbers with the shipped model.

    .venv/bin/python docs/page_screenshot.py [--checkpoint models/default] [--out docs/page.png]

Starts the real service on a loopback port (CPU), uploads `training.synth` samples 21, 4 and 57 through
the page's file input in headless Chromium (Debian's, via Playwright; `make browser` installs it), waits
until all three numbers are drawn, and saves a full-page screenshot. The samples are fixed, so a new
model is shown on the same images as the old one, misreads included. Run it with nothing else busy on
the CPU: the page prints the server's time per image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.synth import render_sample  # noqa: E402  (after the path fix, when run as a script)

SAMPLE_SEEDS = (21, 4, 57)


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    """Poll `url`/health/ready until it answers 200, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png")
    parser.add_argument("--port", type=int, default=8877)
    args = parser.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("no Chromium on PATH (make browser installs Debian's)")
    env = {**os.environ, "DIGITSERVE_DEVICE": "cpu"}
    if args.checkpoint is not None:
        env["DIGITSERVE_CHECKPOINT"] = str(args.checkpoint.resolve())
    url = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for seed in SAMPLE_SEEDS:
            path = Path(tmp) / f"house-{seed}.png"
            render_sample(seed).image.save(path)
            files.append(str(path))
        command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
        server = subprocess.Popen([*command, "--port", str(args.port)], cwd=ROOT, env=env)
        try:
            wait_ready(url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(f"{url}/")
                page.wait_for_function("document.querySelector('#status').textContent.startsWith('Ready:')")
                page.set_input_files("#files", files)
                page.wait_for_function(
                    f"document.querySelectorAll('[data-testid=number][data-number]').length == {len(files)}",
                    timeout=60_000,
                )
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
