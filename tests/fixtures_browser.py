"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright
(it cannot download a browser of its own). One launch per test module."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
INSECURE_HOST = "insecure.pasteur.test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A name that is not localhost: plain http to it is not a secure context,
    # so WebCrypto is missing there (what a visitor of a plain-http site gets).
    f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
