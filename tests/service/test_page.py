"""The page at /: served by the app, and driven in headless Chromium against a real server."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import png
from tests.service.test_server import Server, server_factory  # noqa: F401 (fixture)
from training.synth import render_sample

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Builds a File from base64 and fires a paste (on the document) or a drop (on the drop zone) carrying it.
SEND_FILE_EVENT = """({data, event}) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], event + ".png", {type: "image/png"}));
  if (event === "paste") {
    document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer}));
  } else {
    const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
    document.querySelector("#drop").dispatchEvent(drop);
  }
}"""
SCREENSHOT_DIR = Path(
    os.environ.get("DIGITSERVE_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "out")
)


@pytest.fixture
def sync_api() -> ModuleType:
    """Playwright's sync API, or a skip that says what is missing."""
    if CHROMIUM is None:
        pytest.skip("no Chromium here: `make browser` installs Debian's chromium (needs root and apt)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def test_page_and_assets_are_served_without_cdn(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/v1/detect" in script.text and "X-API-Key" in script.text
    assert client.get("/static/style.css").status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]


@pytest.mark.slow
def test_page_reads_an_uploaded_image_in_chromium(
    server_factory: type[Server],  # noqa: F811
    tiny_checkpoint: Path,
    tmp_path: Path,
    sync_api: ModuleType,
) -> None:
    image = tmp_path / "house.png"
    render_sample(7).image.save(image)
    # threshold 0 makes even the untrained tiny model read a number; the API key guards /v1/*
    server = server_factory(tiny_checkpoint, score_threshold="0.0", api_keys='["page-key"]')
    server.wait_ready()
    expected = httpx.post(
        f"{server.url}/v1/recognize?alternatives=3",
        headers={"X-API-Key": "page-key"},
        files=[("image", ("house.png", image.read_bytes(), "image/png"))],
        timeout=30,
    ).json()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(server.url + "/")
        page.fill("#api-key", "page-key")
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('Ready:')")
        version = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": "page-key"}).json()["version"]
        assert page.inner_text("#status").endswith(f"version {version}")  # what a report should quote
        page.set_input_files("#files", str(image))
        number = page.wait_for_selector("[data-testid=number][data-number]", timeout=30_000)
        assert number.get_attribute("data-number") == str(expected["results"][0]["number"])
        others = [a["text"] for a in expected["results"][0]["alternatives"]]
        assert others and page.inner_text("[data-testid=alternatives]") == f"or perhaps: {', '.join(others)}"
        assert int(page.get_attribute("canvas", "data-boxes") or 0) > 0
        # "Should show": each photo says which of the numbers typed it shows, as /v1/confirm answers
        read, first = str(expected["results"][0]["number"]), others[0]
        for typed in (read, first, "12345678", f"12345678, {first} {read}", "12345678 9"):
            numbers = typed.replace(",", " ").split()
            answer = httpx.post(
                f"{server.url}/v1/confirm?" + "&".join(f"number={n}" for n in numbers),
                headers={"X-API-Key": "page-key"},
                files=[("image", ("house.png", image.read_bytes(), "image/png"))],
                timeout=30,
            ).json()["results"][0]
            page.fill("#expected", typed)
            asked = ",".join(map(str, answer["expected"]))  # the answer to these numbers, not the last ones
            shown = str(answer["shown"]).lower()
            page.wait_for_selector(f"[data-testid=confirm][data-expected='{asked}'][data-shown='{shown}']")
            said = page.inner_text("[data-testid=confirm]")
            if answer["how"] == "read":
                assert said == f"\u2713 shows {answer['match']}: the number read"
            elif answer["shown"]:
                assert (
                    said.startswith(f"\u2713 shows {answer['match']}, ") and f"{answer['score']:.2f}" in said
                )
            else:
                assert said == "\u2717 does not show " + (
                    numbers[0] if len(numbers) == 1 else f"any of {', '.join(numbers)}"
                )
        page.fill("#expected", "")
        page.wait_for_selector(
            "[data-testid=confirm][data-shown='']", state="attached"
        )  # empty: nothing asked
        assert page.inner_text("[data-testid=confirm]") == ""
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "page.png"), full_page=True)
        page.fill("#threshold", "1")  # nothing scores 1.0: the number is re-read as -1 without re-uploading
        page.wait_for_selector("[data-testid=number][data-number='-1']", timeout=10_000)
        assert "no digit found" in page.inner_text("[data-testid=number]")
        assert page.inner_text("[data-testid=alternatives]") == ""  # nothing read: nothing one edit away
        # paste from the clipboard, then drop a file: each adds a result
        payload = base64.b64encode(image.read_bytes()).decode()
        for event in ("paste", "drop"):
            page.evaluate(SEND_FILE_EVENT, {"data": payload, "event": event})
        page.wait_for_function("document.querySelectorAll('[data-testid=number][data-number]').length == 3")
        browser.close()


BROKEN_PNG = b"\x89PNG\r\n\x1a\n this is not really a png"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("payload", "settings", "shown"),
    [
        # neither the browser nor the service can read it: the page quotes the service's words
        (
            BROKEN_PNG,
            {},
            r"^Could not read this image: image 0: the image is truncated or damaged .*"
            r"\(HTTP 400, request id [0-9a-f]{32}\)$",
        ),
        # the browser shows it and the service refuses its pixels: the page quotes the error's request id
        (
            png((200, 100)),
            {"max_pixels": "1000"},
            r"more than the 1000 allowed \(HTTP 413, request id [0-9a-f]{32}\)$",
        ),
    ],
)
def test_page_shows_errors_in_words(
    server_factory: type[Server],  # noqa: F811
    tiny_checkpoint: Path,
    tmp_path: Path,
    sync_api: ModuleType,
    payload: bytes,
    settings: dict[str, str],
    shown: str,
) -> None:
    upload = tmp_path / "photo.png"
    upload.write_bytes(payload)
    server = server_factory(tiny_checkpoint, **settings)
    server.wait_ready()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(server.url + "/")
        page.set_input_files("#files", str(upload))
        error = page.wait_for_selector(".result .error:not(:empty)", timeout=30_000).inner_text()
        assert re.search(shown, error), error
        browser.close()


@pytest.mark.slow
def test_page_reads_a_heic_the_browser_cannot_show(
    server_factory: type[Server],  # noqa: F811
    tiny_checkpoint: Path,
    tmp_path: Path,
    sync_api: ModuleType,
) -> None:
    """Chromium shows no HEIC; the service reads it: the page gives the number and draws the boxes on
    a blank the upright size of the photo, and says why there is no picture."""
    image = tmp_path / "IMG_0001.HEIC"
    render_sample(7).image.save(image, format="HEIF")
    server = server_factory(tiny_checkpoint, score_threshold="0.0")
    server.wait_ready()
    expected = httpx.post(
        f"{server.url}/v1/recognize",
        files=[("image", (image.name, image.read_bytes(), "image/heic"))],
        timeout=30,
    ).json()["results"][0]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(server.url + "/")
        page.set_input_files("#files", str(image))
        number = page.wait_for_selector("[data-testid=number][data-number]", timeout=30_000)
        assert number.get_attribute("data-number") == str(expected["number"])
        assert int(page.get_attribute("canvas", "data-boxes") or 0) > 0
        assert "cannot show the image" in page.inner_text(".timing")
        assert page.inner_text(".timing").startswith(f"{expected['width']}x{expected['height']} px")
        assert page.inner_text(".result .error") == ""
        browser.close()
