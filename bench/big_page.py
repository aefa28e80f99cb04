"""How fast a big paste's page shows its text in headless Chromium (issue 16
item 2): a ~1 MiB Python file (the standard library's first modules, cut at a
line), pasted clear and encrypted, each with line numbers.

Clear, and encrypted in format v1 (the ciphertext as it is) and v2 (compressed
before it is encrypted). For each: the time from navigation to the code's text on screen (the last
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
from .trace import CATEGORIES, cpu_by_kind

CHROMIUM = "/usr/bin/chromium"
ON_SCREEN = """(n) => {
  const code = document.querySelector("#paste pre.code code, #paste pre code");
  if (!code || code.textContent.length < n) return false;
  const box = code.getBoundingClientRect();
  return box.height > 0 && !document.querySelector("#paste").hidden;
}"""
COLOURED = """() => document.querySelector("#paste .hljs-keyword, #paste .k") !== null"""
# Every byte the page loaded, as sent (compressed): the document, modules, styles, fetches.
WEIGHT = """() => [...performance.getEntriesByType("navigation"),
  ...performance.getEntriesByType("resource")].reduce((n, e) => n + e.transferSize, 0)"""
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


def measure(browser, url: str, text: str, trace: bool = False) -> dict[str, object]:
    page = browser.new_page()
    try:
        if trace:
            browser.start_tracing(page=page, categories=CATEGORIES.split(","))
        began = time.monotonic()
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_function(ON_SCREEN, arg=len(text) - 1, polling="raf", timeout=120_000)
        page.evaluate(FRAME)
        shown = time.monotonic() - began
        cpu = cpu_by_kind(browser.stop_tracing()) if trace else None
        page.wait_for_function(COLOURED, polling=50, timeout=120_000)
        coloured = time.monotonic() - began
        elements = page.evaluate("document.getElementsByTagName('*').length")
        sent = page.evaluate(WEIGHT)
    finally:
        page.close()
    out: dict[str, object] = {"visible_s": round(shown, 3), "coloured_s": round(coloured, 3),
                              "elements": elements, "bytes": sent}
    if cpu is not None:
        out["cpu_ms_to_visible"] = cpu
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=(1 << 20) - 64 * 1024,
                        help="bytes of Python (default: just under the default 1 MiB --max)")
    parser.add_argument("--trace", action="store_true",
                        help="trace each load: the main thread's CPU time to visible text, by "
                             "kind (parse, script, style, layout, paint)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    text = python_text(args.size)
    payload = crypto.make_payload(text, "python", True)
    key1, iv1, ct1 = crypto.encrypt(payload, fmt=1)  # format v1: the ciphertext as sent
    began = time.monotonic()
    v2 = crypto.new_paste(payload)  # format v2: compressed, then encrypted
    sealed_s = time.monotonic() - began
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        os.sched_setaffinity(0, {0})
        server = start(port, Path(tmp) / "data")  # the server on CPU 0
        os.sched_setaffinity(0, {1})  # this process and the browser on CPU 1
        try:
            plain = post(base, paste=text, hl="python", ln="true")
            enc1 = post(base, paste=ct1, iv=iv1, encrypted="true")
            enc2 = post(base, **v2.fields())
            packed = len(brotli.compress(text.encode(), quality=5))
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"paste: {len(text.encode())} bytes, {text.count(chr(10))} lines of Python; "
                  f"brotli-5 of the paste {packed} B; v2 sealed in Python in {sealed_s:.3f} s, "
                  f"ciphertext {len(crypto.b64url_decode(v2.ct))} B "
                  f"(v1: {len(crypto.b64url_decode(ct1))} B)")
            pages = (("plain", f"/{plain}", ""), ("encrypted v1", f"/{enc1}", key1),
                     ("encrypted v2", f"/{enc2}", v2.key))
            for what, path, _ in pages:
                for attempt in ("first", "cached"):
                    began = time.monotonic()
                    r = httpx.get(base + path, headers={"accept-encoding": "br"}, timeout=120)
                    print(f"  {what} page, {attempt} answer: {time.monotonic() - began:.3f} s, "
                          f"{r.num_bytes_downloaded} B sent ({r.headers.get('content-encoding')})"
                          f", {r.num_bytes_downloaded / packed:.2f}x the paste compressed")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                for what, path, key in pages:
                    path += f"#{key}" if key else ""
                    for attempt in (1, 2, 3):
                        print(f"  {what} in Chromium, run {attempt}:",
                              measure(browser, base + path, text, args.trace))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
