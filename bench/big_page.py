"""How fast a big paste's page shows its text in headless Chromium (issue 16
item 2): a ~1 MiB Python file (the standard library's first modules, cut at a
line), pasted clear and encrypted, each with line numbers.

For each: the time from navigation to the code's text on screen (the last
line laid out, then a frame), to the text coloured, the page's elements, the
page as sent with brotli against the paste compressed alike, and the server's
first and cached answer times. The browser runs pinned to one CPU, the server
to the other. A measurement, not a test: run it on any tree:

    python -m bench.big_page                          # this worktree's code
    PYTHONPATH=/work/main/src python -m bench.big_page  # another tree's code
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import tempfile
import time
from pathlib import Path

import brotli
import httpx

from pasteur import crypto

from .big_head import start
from .procs import free_port

CHROMIUM = "/usr/bin/chromium"
ON_SCREEN = """(n) => {
  const code = document.querySelector("#paste pre.code code, #paste pre code");
  if (!code || code.textContent.length < n) return false;
  const box = code.getBoundingClientRect();
  return box.height > 0 && !document.querySelector("#paste").hidden;
}"""
COLOURED = """() => document.querySelector("#paste .hljs-keyword, #paste .k") !== null"""
FRAME = "() => new Promise((r) => requestAnimationFrame(() => r()))"


def python_text(size: int) -> str:
    text = ""
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text += f.read_text("utf-8", "replace")
        if len(text.encode()) > size:
            break
    text = text.encode()[: size - 1].decode("utf-8", "ignore")
    return text[: text.rfind("\n") + 1]


def post(url: str, **fields: str) -> str:
    r = httpx.post(url + "/", files={k: (None, v) for k, v in fields.items()},
                   headers={"accept": "application/json"}, timeout=60)
    r.raise_for_status()
    return str(r.json()["code"])


def measure(browser, url: str, text: str) -> dict[str, float]:
    page = browser.new_page()
    try:
        began = time.monotonic()
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_function(ON_SCREEN, arg=len(text) - 1, polling="raf", timeout=120_000)
        page.evaluate(FRAME)
        shown = time.monotonic() - began
        page.wait_for_function(COLOURED, polling=50, timeout=120_000)
        coloured = time.monotonic() - began
        elements = page.evaluate("document.getElementsByTagName('*').length")
    finally:
        page.close()
    return {"visible_s": round(shown, 3), "coloured_s": round(coloured, 3), "elements": elements}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=(1 << 20) - 64 * 1024,
                        help="bytes of Python (default: just under the default 1 MiB --max)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    text = python_text(args.size)
    key, iv, ct = crypto.encrypt(crypto.make_payload(text, "python", True))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        os.sched_setaffinity(0, {0})
        server = start(port, Path(tmp) / "data")  # the server on CPU 0
        os.sched_setaffinity(0, {1})  # this process and the browser on CPU 1
        try:
            plain = post(base, paste=text, hl="python", ln="true")
            enc = post(base, paste=ct, iv=iv, encrypted="true")
            print(f"paste: {len(text.encode())} bytes, {text.count(chr(10))} lines of Python; "
                  f"brotli-5 of the paste {len(brotli.compress(text.encode(), quality=5))} B")
            for what, path in (("plain", f"/{plain}"), ("encrypted", f"/{enc}")):
                for attempt in ("first", "cached"):
                    began = time.monotonic()
                    r = httpx.get(base + path, headers={"accept-encoding": "br"}, timeout=120)
                    print(f"  {what} page, {attempt} answer: {time.monotonic() - began:.3f} s, "
                          f"{r.num_bytes_downloaded} B sent ({r.headers.get('content-encoding')})")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                for what, path in (("plain", f"/{plain}"), ("encrypted", f"/{enc}#{key}")):
                    for attempt in (1, 2, 3):
                        print(f"  {what} in Chromium, run {attempt}:",
                              measure(browser, base + path, text))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
