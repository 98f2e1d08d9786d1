"""Redraw `docs/page.png`: the page at / reading three synthetic house numbers with the shipped model.

    .venv/bin/python docs/page_screenshot.py [--checkpoint models/default] [--out docs/page.png]

Starts the real service on a loopback port (CPU), uploads `training.synth` samples 21, 4 and 57 through
the page's file input in headless Chromium (Debian's, via Playwright; `make browser` installs it), asks
whether each shows `--expected` ("Should show", /v1/confirm's answer; 473 by default), waits until all
three numbers and answers are drawn, and saves a full-page screenshot. The samples are fixed, so a new
model is shown on the same images as the old one, misreads included. Run it with nothing else busy on
the CPU: the page prints the server's time per image.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_service import start_server  # noqa: E402  (after the path fix, run as a script)
from service.config import Settings, resolve_checkpoint  # noqa: E402
from training.synth import render_sample  # noqa: E402

SAMPLE_SEEDS = (21, 4, 57)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png")
    parser.add_argument("--port", type=int, default=8877)
    parser.add_argument(
        "--expected", default="473", help="the number or numbers typed into Should show ('': none)"
    )
    args = parser.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("no Chromium on PATH (make browser installs Debian's)")
    checkpoint = (args.checkpoint or resolve_checkpoint(Settings())).resolve()
    url = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for seed in SAMPLE_SEEDS:
            path = Path(tmp) / f"house-{seed}.png"
            render_sample(seed).image.save(path)
            files.append(str(path))
        server = start_server(checkpoint, args.port, batch_size=1, device="cpu")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(f"{url}/")
                page.wait_for_function("document.querySelector('#status').textContent.startsWith('Ready:')")
                page.fill("#expected", args.expected)
                page.set_input_files("#files", files)
                page.wait_for_function(
                    f"document.querySelectorAll('[data-testid=number][data-number]').length == {len(files)}",
                    timeout=60_000,
                )
                if args.expected:
                    asked = ",".join(
                        dict.fromkeys(str(int(n)) for n in args.expected.replace(",", " ").split())
                    )
                    answered = f"[data-testid=confirm][data-expected='{asked}']"
                    page.wait_for_function(f'document.querySelectorAll("{answered}").length == {len(files)}')
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
