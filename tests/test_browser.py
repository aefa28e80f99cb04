"""The browser side against the real server, in headless Chromium (Playwright).

One browser for the module; every page records console errors, page errors and
Content-Security-Policy violations, and each test checks there were none.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pasteur import crypto

from .fixtures_hostile import plant

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).parent / "vectors" / "crypto-v1.json").read_text("utf-8"))

SECRET = "launch_codes_8f2c91"
PYTHON_CODE = (
    "import os\n"
    "\n"
    "def greet(name):\n"
    f'    """Say hello; {SECRET}."""\n'
    "    return f'Hello, {name}!'  # <b>not bold</b>\n"
)

# Reports CSP violations to the console, where the page fixture collects them.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def server(shared_server):
    """One `pasteur serve` (tests/conftest.py) for the whole module."""
    return shared_server


class Problems(list):
    """Console errors, uncaught page errors and CSP violations of one page."""

    def ignore(self, text):
        self[:] = [p for p in self if text not in p]

    def check(self):
        # A document served with an error status (404, 400) is logged as a failed
        # load: that is expected where a test asks for one; anything else is not.
        real = [p for p in self if "Failed to load resource" not in p]
        assert real == [], real


@pytest.fixture
def page(browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.add_init_script(CSP_LISTENER)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    problems = Problems()
    pg.on("console", lambda m: m.type == "error" and problems.append(m.text))
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.problems = problems
    yield pg
    context.close()
    problems.check()


@pytest.fixture
def reader(browser):
    """Another visitor: a second browser context (no creator cookie), checked like `page`."""
    contexts = []

    def open_page():
        context = browser.new_context(accept_downloads=True)
        context.add_init_script(CSP_LISTENER)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        pg.problems = Problems()
        pg.on("console", lambda m: m.type == "error" and pg.problems.append(m.text))
        pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
        pg.requested = []
        pg.on("request", lambda r: pg.requested.append(r.url))
        return pg

    yield open_page
    for context in contexts:
        for pg in context.pages:
            pg.problems.check()
        context.close()


def repo_of(data: Path) -> Path:
    """The Git repository under the server's data directory."""
    data = Path(data)
    for candidate in [data, *sorted(data.rglob("*"))]:
        if (
            candidate.is_dir()
            and (candidate / "HEAD").is_file()
            and (candidate / "objects").is_dir()
        ):
            return candidate
        if (candidate / ".git").is_dir():
            return candidate / ".git"
    raise AssertionError(f"no Git repository under {data}")


def git(server, *args: str) -> str:
    server.settle()  # acknowledged once journaled: wait for the commit
    return subprocess.run(
        ["git", "-C", str(repo_of(server.data)), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commit_count(server) -> int:
    try:
        return int(git(server, "rev-list", "--count", "HEAD"))
    except (subprocess.CalledProcessError, AssertionError):
        return 0


def stored_blob(server, paste_id: str) -> str:
    return git(server, "cat-file", "-p", f"HEAD:{paste_id[0]}/{paste_id[1]}/{paste_id}")


def wait_for_commit(server, before: int) -> None:
    """The store may commit in groups: wait until HEAD moved."""
    import time

    deadline = time.monotonic() + 5
    while commit_count(server) <= before and time.monotonic() < deadline:
        time.sleep(0.05)


def fill_form(page, server, text, lang="", ln=False, raw=False, encrypted=True):
    page.goto(server.url + "/")
    page.get_by_label("Your text").fill(text)
    page.get_by_label("Language").select_option(lang)
    page.get_by_label("Line numbers").set_checked(ln)
    page.get_by_label("Raw").set_checked(raw)
    page.get_by_label("Encrypted").set_checked(encrypted)


def split_link(url: str) -> tuple[str, str]:
    m = re.fullmatch(r".*/([A-Za-z0-9_-]+)#([A-Za-z0-9_-]+)", url)
    assert m, url
    return m.group(1), m.group(2)


# -- 1, 2: encrypted paste through the form --------------------------------


@pytest.fixture(scope="module")
def encrypted_link(browser, server):
    """Paste PYTHON_CODE encrypted through the form; the link with its key."""
    context = browser.new_context()
    pg = context.new_page()
    fill_form(pg, server, PYTHON_CODE, lang="python", ln=True)
    pg.get_by_role("button", name="Paste").click()
    pg.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    url = pg.url
    context.close()
    return url


def test_encrypted_paste_round_trip(page, server, encrypted_link):
    paste_id, key = split_link(encrypted_link)
    page.goto(encrypted_link)
    code = page.locator("#paste-code")
    code.locator(".hljs-keyword").first.wait_for()
    assert code.inner_text() == PYTHON_CODE
    assert code.locator(".hljs-string").count() > 0
    assert "&lt;b&gt;" in code.inner_html()  # escaped, not markup
    # Line numbers: one counted line per source line, drawn by CSS, not text.
    assert page.locator("#paste").get_attribute("class") == "numbered"
    # Line numbers: one text node beside the code, no element per line, not selectable.
    gutter = page.locator("#paste-gutter")
    assert gutter.inner_text() == "1\n2\n3\n4\n5"
    assert gutter.evaluate("e => e.childNodes.length") == 1
    assert gutter.evaluate("e => getComputedStyle(e).userSelect") == "none"
    assert gutter.get_attribute("aria-hidden") == "true"
    assert page.locator("#paste-status").is_hidden()
    assert page.locator("#paste-lang").inner_text() == "Python"  # the display name
    # Copy puts the exact text, without numbers, on the clipboard.
    page.get_by_role("button", name="Copy", exact=True).click()
    assert page.evaluate("navigator.clipboard.readText()") == PYTHON_CODE
    # Raw opens a Blob URL with the text in a new tab.
    raw_link = page.get_by_role("link", name="Raw")
    assert raw_link.get_attribute("href").startswith("blob:")
    with page.context.expect_page() as popup_info:
        raw_link.click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.locator("body").inner_text() == PYTHON_CODE
    popup.close()
    assert page.get_by_role("link", name="Download").get_attribute("download") == f"{paste_id}.py"

    # The server holds neither the text nor the key: not in Git, not in its log.
    blob = stored_blob(server, paste_id)
    log = Path(server.log_path).read_text("utf-8", errors="replace")
    for secret in (SECRET, "def greet", key):
        assert secret not in blob
        assert secret not in log
    assert page.locator("#paste").get_attribute("data-iv") in blob


def test_encrypted_paste_without_key_or_with_wrong_key(page, server, encrypted_link):
    paste_id, key = split_link(encrypted_link)
    page.goto(f"{server.url}/{paste_id}")
    status = page.locator("#paste-status")
    assert "the link you opened has no key" in status.inner_text()
    assert "ask its author for the full link" in status.inner_text()
    assert page.locator("#paste").is_hidden()

    wrong = crypto.b64url_encode(bytes(32))
    page.goto(f"{server.url}/{paste_id}#{wrong}")  # same document: hashchange
    page.get_by_text("the key in the link is wrong, or the paste was altered").wait_for()
    assert page.locator("#paste").is_hidden()
    assert SECRET not in page.content()

    page.goto(f"{server.url}/{paste_id}#{key[:20]}")  # cut short
    page.get_by_text("the key in the link you opened is malformed").wait_for()

    page.goto(encrypted_link)  # the right key again shows the paste
    page.locator("#paste-code .hljs-keyword").first.wait_for()


# -- 3: unencrypted --------------------------------------------------------


def test_unencrypted_paste_with_line_numbers_and_raw(page, server):
    text = "def f(x):\n    return x * 2  # <i>\n\nprint(f(21))\n"
    fill_form(page, server, text, lang="python", ln=True, encrypted=False)
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+$"))
    paste_id = page.url.rsplit("/", 1)[1]
    numbers = page.locator("#paste .gutter")
    assert numbers.inner_text() == "1\n2\n3\n4"
    assert numbers.evaluate("e => getComputedStyle(e).userSelect") == "none"
    assert page.locator("#paste pre.code").inner_text() == text
    assert page.locator("#paste .hljs-keyword").count() > 0  # Pygments tokens, hljs classes
    assert "&lt;i&gt;" in page.locator("#paste").inner_html()

    raw = httpx.get(f"{server.url}/{paste_id}?raw=true")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.text == text  # the textarea's CRLF is stored as LF (server side)

    # With "raw" checked, the form lands on the raw view.
    fill_form(page, server, "plain words\n", raw=True, encrypted=False)
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+\?raw=true$"))
    assert page.locator("body").inner_text().strip() == "plain words"


def test_show_page_works_without_javascript(browser, server):
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    fill_form(pg, server, "SELECT 1;\n", lang="sql", encrypted=False)
    pg.get_by_role("button", name="Paste").click()
    pg.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+$"))
    assert pg.locator("#paste pre").inner_text() == "SELECT 1;\n"
    context.close()


def test_form_without_javascript_offers_only_what_works(browser, server):
    """No "Encrypted", no password, no note about encryption: the page says the
    paste goes in clear, and it does (the checkbox is never sent)."""
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.goto(server.url + "/")
    for hidden in ("Encrypted", "Password"):
        assert pg.get_by_label(hidden).is_hidden(), hidden
    for note in ("#crypto-note", "#password-note", "#attach"):
        assert pg.locator(note).is_hidden(), note
    assert "Encrypted in your browser" in pg.locator("#crypto-note").inner_text()  # hidden
    note = pg.locator("noscript p.note")  # (Playwright's text search skips <noscript>)
    assert note.is_visible() and "will be stored in clear" in note.inner_text()
    pg.get_by_label("Your text").fill("no script here\n")
    pg.get_by_role("button", name="Paste").click()
    pg.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+$"))
    assert pg.locator("#paste pre").inner_text() == "no script here\n"
    # A password the page could not hide (its noscript.css not loaded here) is
    # sent, and refused: a paste meant to be protected is never stored in clear.
    before = commit_count(server)
    pg.route("**/static/noscript.css*",
             lambda route: route.fulfill(body="", content_type="text/css"))
    pg.goto(server.url + "/")
    pg.get_by_label("Your text").fill("meant to be protected\n")
    pg.get_by_label("Password").fill("pw")
    pg.get_by_role("button", name="Paste").click()
    pg.get_by_text("clear the password to paste in clear").wait_for()
    assert commit_count(server) == before
    pg.unroute("**/static/noscript.css*")
    # An encrypted paste's page: no "Decrypting…", no button that would burn it unread.
    sealed = post_encrypted(server, "A" * 24, "B" * 16)
    pg.goto(f"{server.url}/{sealed}")
    assert pg.locator("#paste-status").is_hidden()
    assert "JavaScript is needed" in pg.locator("noscript p").inner_text()
    once = httpx.post(server.url + "/", files={"paste": (None, "A" * 24), "iv": (None, "B" * 16),
                                               "encrypted": (None, "true"), "burn": (None, "true")},
                      headers={"Accept": "application/json"}).json()["code"]
    pg.goto(f"{server.url}/{once}")
    assert pg.get_by_role("button", name="Read it now").is_hidden()
    context.close()


def test_form_with_javascript_encrypts_by_default(page, server):
    page.goto(server.url + "/")
    assert page.get_by_label("Encrypted").is_checked()
    assert page.get_by_label("Password").is_visible()
    assert page.get_by_text("Encrypted in your browser").is_visible()
    assert page.locator("noscript p.note").count() == 0


# -- 4: refusals in the form -------------------------------------------------


def test_raw_and_encrypted_refused(page, server):
    before = commit_count(server)
    fill_form(page, server, "some text\n", raw=True, encrypted=True)
    url = page.url
    page.get_by_role("button", name="Paste").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "cannot go together" in alert.inner_text()
    assert page.url == url
    assert page.get_by_label("Your text").input_value() == "some text\n"
    assert commit_count(server) == before


def test_size_limit_checked_in_the_browser(page, server):
    fill_form(page, server, "x" * 200)
    page.evaluate("document.getElementById('paste-form').dataset.maxSize = '100'")
    page.get_by_label("Your text").press("End")
    page.get_by_role("button", name="Paste").click()
    assert "too large" in page.get_by_role("alert").inner_text()


def test_server_error_is_shown_and_text_kept(page, server):
    fill_form(page, server, "kept text\n")
    page.route(
        "**/",
        lambda route: (
            route.fulfill(status=503, json={"error": "the store is down"})
            if route.request.method == "POST"
            else route.continue_()
        ),
    )
    page.get_by_role("button", name="Paste").click()
    assert page.get_by_role("alert").inner_text() == "the store is down"
    assert page.get_by_label("Your text").input_value() == "kept text\n"


def test_no_webcrypto_on_plain_http(page, server):
    insecure = server.url.replace("127.0.0.1", "insecure.pasteur.test").replace(
        "localhost", "insecure.pasteur.test"
    )
    page.goto(insecure + "/")
    assert page.evaluate("window.isSecureContext") is False
    page.get_by_label("Your text").fill("text\n")
    page.get_by_label("Encrypted").check()  # unchecked there by default: asked for anyway
    before = commit_count(server)
    page.get_by_role("button", name="Paste").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "https" in alert.inner_text() and "uncheck" in alert.inner_text()
    assert commit_count(server) == before
    # The show page says the same in plain words.
    vec = VECTORS["valid"][0]
    code = post_encrypted(server, vec["ct"], vec["iv"])
    page.goto(f"{insecure}/{code}#{vec['key']}")
    page.get_by_text("cannot decrypt it here").wait_for()
    # Chromium's note that COOP needs a secure origin is expected on plain http.
    page.problems.ignore("Cross-Origin-Opener-Policy header has been ignored")


# -- 5: the shared format in Chromium --------------------------------------


def post_encrypted(server, ct: str, iv: str) -> str:
    r = httpx.post(
        server.url + "/",
        files={"paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true")},
        headers={"Accept": "application/json"},
    )
    assert r.status_code in (200, 201), r.text
    return r.json()["code"]


def test_crypto_vectors_in_chromium(page, server):
    page.goto(server.url + "/")
    result = page.evaluate(
        """async (vectors) => {
          const c = await import("/static/crypto.js");
          const out = {decrypted: [], sealed: [], invalid: []};
          for (const v of vectors.valid) {
            out.decrypted.push(await c.decrypt(v.key, v.iv, v.ct));
            out.sealed.push(await c.seal(c.b64urlDecode(v.key), c.b64urlDecode(v.iv), v.payload));
          }
          for (const v of vectors.invalid) {
            try { await c.decrypt(v.key, v.iv, v.ct); out.invalid.push("decrypted!"); }
            catch (e) { out.invalid.push(e.kind); }
          }
          out.password = [];
          for (const v of vectors.password) {
            const kdf = {password: v.password, salt: v.salt, iter: v.iter};
            const aes = await c.deriveKey(
              c.b64urlDecode(v.key), v.password, c.b64urlDecode(v.salt), v.iter);
            out.password.push([c.b64urlEncode(aes), await c.decrypt(v.key, v.iv, v.ct, kdf)]);
          }
          for (const v of vectors.password_invalid) {
            const kdf = v.password === null
              ? null : {password: v.password, salt: v.salt, iter: v.iter};
            try { await c.decrypt(v.key, v.iv, v.ct, kdf); out.invalid.push("decrypted!"); }
            catch (e) { out.invalid.push(e.kind); }
          }
          const p = c.makePayload("round trip ✓\\n", "rust", true);
          const e = await c.encrypt(p);
          out.roundTrip = await c.decrypt(e.key, e.iv, e.ct, null, e.fmt);
          out.lengths = [c.b64urlDecode(e.key).length, c.b64urlDecode(e.iv).length];
          out.fresh = (await c.encrypt(p)).key !== e.key;
          out.encrypted = e;
          return out;
        }""",
        VECTORS,
    )
    assert result["decrypted"] == [v["payload"] for v in VECTORS["valid"]]
    assert result["sealed"] == [v["ct"] for v in VECTORS["valid"]]
    n_invalid = len(VECTORS["invalid"]) + len(VECTORS["password_invalid"])
    assert result["invalid"] == ["auth"] * n_invalid
    assert result["password"] == [[v["aes_key"], v["payload"]] for v in VECTORS["password"]]
    assert result["roundTrip"] == {"v": 1, "text": "round trip ✓\n", "lang": "rust", "ln": True}
    assert result["lengths"] == [32, 12] and result["fresh"]
    e = result["encrypted"]  # and what the browser encrypts (v2), Python decrypts
    assert e["fmt"] == 2
    assert crypto.decrypt(e["key"], e["iv"], e["ct"], fmt=e["fmt"])["text"] == "round trip ✓\n"


VECTORS_V2 = json.loads((Path(__file__).parent / "vectors" / "crypto-v2.json").read_text("utf-8"))


def test_format_v2_in_chromium_both_ways(page, server):
    """The v2 vectors (made by Python) decrypt in Chromium, each invalid one fails for its
    reason; what Chromium encrypts in v2 Python decrypts; a decompression bomb is refused."""
    bomb_key, bomb_iv = bytes(range(32)), bytes(12)
    zeros = crypto.deflate(b'{"v":1,"text":"' + b"0" * (crypto.MAX_INFLATED - 16) + b'"}')
    bomb = crypto.b64url_encode(AESGCM(bomb_key).encrypt(bomb_iv, zeros, None))
    page.goto(server.url + "/")
    result = page.evaluate(
        """async ([vectors, bomb]) => {
          const c = await import("/static/crypto.js");
          const out = {decrypted: [], inflated: [], resealed: [], invalid: [], v1: []};
          for (const v of vectors.valid) {
            out.decrypted.push(await c.decrypt(v.key, v.iv, v.ct, null, 2));
            const plain = await c.inflate(c.b64urlDecode(v.deflated));
            out.inflated.push(new TextDecoder().decode(plain));
            const ct = await c.seal(c.b64urlDecode(v.key), c.b64urlDecode(v.iv), v.payload, 2);
            out.resealed.push(await c.decrypt(v.key, v.iv, ct, null, 2));
            try { await c.decrypt(v.key, v.iv, v.ct); out.v1.push("decrypted!"); }
            catch (e) { out.v1.push(e.kind); }
          }
          for (const v of vectors.invalid) {
            try { await c.decrypt(v.key, v.iv, v.ct, null, 2); out.invalid.push("decrypted!"); }
            catch (e) { out.invalid.push(e.kind); }
          }
          const v = vectors.valid[0];
          out.formats = [];
          for (const fmt of [0, 3, "2", 2.5, null]) {
            try { await c.decrypt(v.key, v.iv, v.ct, null, fmt); out.formats.push("decrypted!"); }
            catch (e) { out.formats.push(e.kind); }
          }
          try { await c.decrypt(bomb.key, bomb.iv, bomb.ct, null, 2); out.bomb = "decrypted!"; }
          catch (e) { out.bomb = [e.kind, e.message]; }
          const text = "def f(x):\\n    return x * 2  # ✓\\n".repeat(2000);
          out.made = [];
          for (const password of ["", "pw"]) {
            out.made.push(await c.encrypt(c.makePayload(text, "python", true), password));
          }
          out.limits = [c.FORMAT, c.MAX_INFLATED];
          return out;
        }""",
        [VECTORS_V2, {"key": crypto.b64url_encode(bomb_key), "iv": crypto.b64url_encode(bomb_iv),
                      "ct": bomb}],
    )
    payloads = [v["payload"] for v in VECTORS_V2["valid"]]
    assert result["decrypted"] == payloads and result["resealed"] == payloads
    assert [json.loads(t) for t in result["inflated"]] == payloads
    assert result["v1"] == ["payload"] * len(payloads)  # a v2 paste is not v1
    assert result["invalid"] == [v["kind"] for v in VECTORS_V2["invalid"]]
    assert result["formats"] == ["format"] * 5
    assert result["bomb"] == ["bomb", "the paste inflates to more than 67108864 bytes: refused"]
    assert result["limits"] == [crypto.FORMAT, crypto.MAX_INFLATED]
    text = "def f(x):\n    return x * 2  # ✓\n" * 2000
    plain, with_password = result["made"]
    assert plain["fmt"] == with_password["fmt"] == 2
    assert len(plain["ct"]) < len(text) / 20  # compressed before it was encrypted
    assert crypto.decrypt(plain["key"], plain["iv"], plain["ct"], fmt=2)["text"] == text
    args = (with_password["key"], with_password["iv"], with_password["ct"], "pw",
            with_password["salt"], with_password["iter"])
    assert crypto.decrypt(*args, fmt=2)["text"] == text


def test_paste_encrypted_by_python_opens_in_browser(page, server):
    text = 'fn main() {\n    println!("from the terminal");\n}\n'
    key, iv, ct = crypto.encrypt(crypto.make_payload(text, "rust", False))
    code = post_encrypted(server, ct, iv)
    page.goto(f"{server.url}/{code}#{key}")
    page.locator("#paste-code .hljs-keyword").first.wait_for()
    assert page.locator("#paste-code").inner_text() == text
    assert page.locator("#paste").get_attribute("class") in (None, "")


def test_paste_encrypted_by_python_in_v2_opens_in_browser(page, server):
    text = 'fn main() {\n    println!("from the terminal, compressed");\n}\n' * 50
    sealed = crypto.new_paste(crypto.make_payload(text, "rust", True))
    code = httpx.post(server.url + "/", files={k: (None, v) for k, v in sealed.fields().items()},
                      headers={"Accept": "application/json"}).json()["code"]
    page.goto(f"{server.url}/{code}#{sealed.key}")
    page.locator("#paste-code .hljs-keyword").first.wait_for()
    assert page.locator("#paste-code").inner_text() == text
    assert page.locator("#paste").get_attribute("data-fmt") == "2"


@pytest.mark.parametrize("fmt", [1, 2])
def test_large_encrypted_paste_is_fetched_then_decrypted(page, server_factory, fmt):
    """Above 4 MiB the page holds no ciphertext: show.js fetches the streamed document
    (and, in v2, learns from it that it is compressed)."""
    big = server_factory("--max", "16MiB")
    if fmt == 1:
        text = ("large line of text " * 50 + "\n") * 5_000  # ~4.8 MiB
    else:  # random letters: still over 4 MiB once compressed
        text = "".join(base64.b64encode(os.urandom(750)).decode() + "\n"
                       for _ in range(5_000))
    key, iv, ct = crypto.encrypt(crypto.make_payload(text, "", False), fmt=fmt)
    assert len(ct) > 4 << 20
    files = {"paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true"),
             "fmt": (None, str(fmt))}
    code = httpx.post(big.url + "/", files=files, headers={"Accept": "application/json"},
                      timeout=60).json()["code"]
    response = page.goto(f"{big.url}/{code}#{key}")
    assert len(response.body()) < 20_000
    page.locator("#paste-code").wait_for(timeout=60_000)
    counts = page.locator("#paste-code").evaluate(
        "e => [e.textContent.split('\\n').length - 1, e.querySelectorAll('*').length]")
    assert counts == [5_000, 25]  # a block per 200 lines, nothing per line


# -- 6: CSP on every kind of page ------------------------------------------


def test_no_csp_violations_on_any_page(page, server, encrypted_link):
    paste_id, _ = split_link(encrypted_link)
    plain = httpx.post(
        server.url + "/",
        files={"paste": (None, "a = 1\n"), "hl": (None, "python"), "ln": (None, "true")},
        headers={"Accept": "application/json"},
    ).json()["code"]
    for path in (
        "/",
        encrypted_link.split(server.url, 1)[1],
        f"/{paste_id}",
        f"/{plain}",
        "/no-such-paste-here",
        "/static/nope.js",
    ):
        response = page.goto(server.url + path)
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, path
        page.wait_for_load_state("networkidle")
        if "no-such" in path:  # the HTML error page
            assert response.status == 404
            assert page.locator("h1").inner_text() == "404"
    assert not [p for p in page.problems if "CSP" in p or "Refused" in p]


def test_form_page_is_light(server):
    """The form page (HTML, CSS, form.js and crypto.js) stays small, and has no highlight.js."""
    html = httpx.get(server.url + "/", headers={"Accept-Encoding": "gzip"})
    assert "hljs" not in html.text
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', html.text)
    total = 0
    for url in [*urls, "/static/crypto.js"]:
        r = httpx.get(server.url + url, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200, url
        total += int(r.headers.get("content-length", len(r.content)))
    page = httpx.get(server.url + "/", headers={"Accept-Encoding": "identity"})
    total += len(page.content)
    assert total < 30 * 1024, total


# -- password and read-once pastes -----------------------------------------


def test_password_paste(page, reader, server):
    password = "open sesame 7c1e"
    before = commit_count(server)
    fill_form(page, server, f"behind a password: {SECRET}\n")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    paste_id, key = split_link(page.url)
    # The creator's page asks the password too: the link alone is not enough.
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Decrypt").click()
    page.get_by_text("the password is wrong").wait_for()
    assert page.locator("#paste").is_hidden()
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Decrypt").click()
    page.locator("#paste-code").wait_for()
    assert page.locator("#paste-code").inner_text() == f"behind a password: {SECRET}\n"
    # Another visitor with the full link is asked the password, may retry.
    rp = reader()
    rp.goto(page.url)
    assert rp.locator("#paste").is_hidden()
    rp.get_by_label("Password").fill("open sesame")
    rp.get_by_role("button", name="Decrypt").click()
    rp.get_by_text("the password is wrong").wait_for()
    assert rp.locator("#paste").is_hidden() and SECRET not in rp.content()
    rp.get_by_label("Password").fill(password)
    rp.get_by_role("button", name="Decrypt").click()
    rp.locator("#paste-code").wait_for()
    assert rp.locator("#paste-code").inner_text() == f"behind a password: {SECRET}\n"
    wait_for_commit(server, before)
    blob = stored_blob(server, paste_id)
    log = Path(server.log_path).read_text("utf-8", errors="replace")
    assert '"kdf"' in blob and '"salt"' in blob
    for secret in (password, SECRET, key):
        assert secret not in blob and secret not in log


def test_password_refused_without_encryption(page, server):
    before = commit_count(server)
    fill_form(page, server, "clear text\n", encrypted=False)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Paste").click()
    assert "encrypted pastes only" in page.get_by_role("alert").inner_text()
    assert commit_count(server) == before



def test_a_hostile_iteration_count_is_refused_before_the_password(page, server_factory):
    srv = server_factory()  # of its own: planting restarts it
    key, iv, ct, salt, _ = crypto.encrypt_with_password(crypto.make_payload(SECRET), "pw", 1000)
    r = httpx.post(srv.url + "/", headers={"accept": "application/json"}, files={
        "paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true"),
        "salt": (None, salt), "iter": (None, str(crypto.KDF_ITERATIONS))})
    paste_id = r.json()["code"]
    doc = json.loads(git(srv, "cat-file", "-p", f"HEAD:{paste_id[0]}/{paste_id[1]}/{paste_id}"))
    doc["kdf"]["iter"] = 10**12  # days of PBKDF2; the server would never store it
    plant(srv, paste_id, doc)
    page.goto(f"{srv.url}/{paste_id}#{key}")
    page.get_by_text("far more password-hashing work").wait_for()
    assert page.locator("#password-form").is_hidden() and page.locator("#paste").is_hidden()
    got = page.evaluate(
        """async ([key, iv, ct, salt]) => {
          const c = await import("/static/crypto.js");
          const out = {max: c.MAX_KDF_ITERATIONS, default: c.KDF_ITERATIONS, kinds: []};
          for (const iter of [1e12, c.MAX_KDF_ITERATIONS + 1, 0, 1.5, "1000"]) {
            try {
              await c.decrypt(key, iv, ct, {password: "pw", salt, iter});
              out.kinds.push("ok");
            } catch (e) { out.kinds.push(e.kind); }
          }
          out.ok = (await c.decrypt(key, iv, ct, {password: "pw", salt, iter: 1000})).text;
          return out;
        }""",
        [key, iv, ct, salt],
    )
    assert got == {"max": crypto.MAX_KDF_ITERATIONS, "default": crypto.KDF_ITERATIONS,
                   "kinds": ["kdf", "kdf", "data", "data", "data"], "ok": SECRET}


def test_read_once_encrypted_paste(page, reader, server):
    before = commit_count(server)
    fill_form(page, server, f"read me once {SECRET}\n")
    page.get_by_label("Burn after reading").check()
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    link = page.url
    paste_id, _ = split_link(link)
    # The creator sees it (redirect, then a reload) without burning it.
    page.locator("#paste-code").wait_for()
    assert "your own views do not burn it" in page.locator(".creator").inner_text()
    page.reload()
    page.locator("#paste-code").wait_for()
    wait_for_commit(server, before)
    assert "read me once" not in stored_blob(server, paste_id)  # still stored, encrypted

    rp = reader()
    # Without the key: a warning, and the button does not burn it.
    rp.goto(f"{server.url}/{paste_id}")
    assert "reading it now would delete it" in rp.locator("#paste-status").inner_text()
    rp.get_by_role("button", name="Read it now").click()
    assert "reading it now would delete it" in rp.locator("#paste-status").inner_text()
    # With the key: confirm, read, and it is gone.
    rp.goto(link)
    rp.reload()
    assert rp.locator("#paste").is_hidden()
    assert rp.get_by_role("link", name="Delete this paste").count() == 0
    rp.get_by_role("button", name="Read it now").click()
    rp.locator("#paste-code").wait_for()
    assert rp.locator("#paste-code").inner_text() == f"read me once {SECRET}\n"
    assert "deleted from the server" in rp.locator("#paste-status").inner_text()
    gone = rp.reload()
    assert gone.status in (404, 410)
    assert page.reload().status in (404, 410)  # for its creator too


# -- the creator's page: delete and QR code ----------------------------------

def read_qr(page, tmp_path: Path) -> str:
    """The text of the creator's QR code: the canvas's pixels, decoded by zbarimg."""
    canvas = page.locator("#paste-qr canvas")
    canvas.wait_for()
    assert canvas.get_attribute("role") == "img" and canvas.get_attribute("aria-label")
    box = canvas.bounding_box()
    assert box["width"] >= 100 and box["height"] >= 100  # drawn, and shown at a usable size
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.skip("no zbarimg (Debian zbar-tools) to read the QR code")
    data_url = canvas.evaluate("c => c.toDataURL('image/png')")
    png = tmp_path / "qr.png"
    png.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
    out = subprocess.run([zbarimg, "--quiet", "--raw", str(png)], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().rstrip("\n")


def test_creator_page_qr_code_and_delete(page, reader, server, tmp_path):
    fill_form(page, server, f"made by me {SECRET}\n")
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    link = page.url
    paste_id, _ = split_link(link)
    assert page.locator("#paste").get_attribute("data-creator") == "true"
    delete = page.get_by_role("link", name="Delete this paste")
    assert delete.is_visible()
    # The QR code holds the whole link, key included (computed in the page).
    assert read_qr(page, tmp_path) == link
    assert "key included" in page.locator("#paste-qr figcaption").inner_text()

    # Another visitor: the paste, but neither the delete button nor the QR code,
    # and the encoder is not even loaded.
    rp = reader()
    rp.goto(link)
    rp.locator("#paste-code").wait_for()
    assert rp.get_by_role("link", name="Delete this paste").count() == 0
    assert rp.locator("#paste-qr").count() == 0
    assert rp.locator("#paste").get_attribute("data-creator") is None
    assert not [u for u in rp.requested if "qrcode" in u or "creator.js" in u]

    # An unencrypted paste: the QR code is its plain URL.
    fill_form(page, server, "in clear\n", encrypted=False)
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+$"))
    assert read_qr(page, tmp_path) == page.url
    assert "key" not in page.locator("#paste-qr figcaption").inner_text()

    # The creator deletes the encrypted one; it is gone for everyone.
    page.goto(link)
    page.get_by_role("link", name="Delete this paste").click()
    page.get_by_role("button", name="Delete it for everyone").click()  # the confirmation
    page.get_by_role("heading", name="Deleted").wait_for()
    assert httpx.get(f"{server.url}/{paste_id}").status_code == 404
    assert rp.reload().status == 404


def test_form_page_never_loads_the_qr_encoder(page, server):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server.url + "/")
    page.wait_for_load_state("networkidle")
    assert not [u for u in requested if "qrcode" in u or "creator.js" in u]


# -- attachments -------------------------------------------------------------

ATTACHED = [
    {"name": "data.bin", "mimeType": "application/octet-stream",
     "buffer": bytes(range(256)) * 40 + b"\r\n\x00end"},
    {"name": "notes ✓.html", "mimeType": "text/html",
     "buffer": "<script>alert(1)</script> notes ✓\r\n".encode()},
]


def test_attachments_through_the_form(page, reader, server, tmp_path):
    fill_form(page, server, "", encrypted=False)
    assert page.locator("#attach").is_hidden()  # files go with encrypted pastes only
    page.get_by_label("Encrypted").check()
    files = page.get_by_label("Attach files")
    files.set_input_files(ATTACHED)
    assert "with 2 files" in page.locator("#paste-size").inner_text()
    page.get_by_label("Your text").fill(f"two files attached {SECRET}\n")
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    link = page.url
    paste_id, _ = split_link(link)
    blob = stored_blob(server, paste_id)
    assert "data.bin" not in blob and "notes" not in blob  # names are encrypted too

    rp = reader()
    rp.goto(link)
    rp.locator("#paste-code").wait_for()
    assert rp.locator("#paste-code").inner_text() == f"two files attached {SECRET}\n"
    items = rp.locator("#paste-files li")
    assert items.count() == 2
    assert "data.bin" in items.nth(0).inner_text() and "10.0 KiB" in items.nth(0).inner_text()
    assert "notes ✓.html" in items.nth(1).inner_text() and "text/html" in items.nth(1).inner_text()
    for item, attached in zip(items.all(), ATTACHED, strict=True):
        with rp.expect_download() as info:
            item.get_by_role("link").click()
        download = info.value
        assert download.suggested_filename == attached["name"]
        assert Path(download.path()).read_bytes() == attached["buffer"]

    out = tmp_path / "saved"
    out.mkdir()
    got = subprocess.run([sys.executable, "-m", "pasteur", "get", link, "--save-files", str(out)],
                         capture_output=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == f"two files attached {SECRET}\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        a["name"]: a["buffer"] for a in ATTACHED}


def test_attachments_only_and_size_limit(page, reader, server):
    fill_form(page, server, "")
    page.get_by_label("Attach files").set_input_files(ATTACHED[:1])
    before = commit_count(server)
    page.get_by_label("Encrypted").uncheck()  # files are never sent in clear
    page.get_by_label("Your text").fill("clear text")
    page.get_by_role("button", name="Paste").click()
    assert "sent encrypted only" in page.get_by_role("alert").inner_text()
    page.get_by_label("Your text").fill("")
    page.get_by_label("Encrypted").check()
    page.evaluate("document.getElementById('paste-form').dataset.maxSize = '5000'")
    page.get_by_role("button", name="Paste").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "attached files are too large" in alert.inner_text()
    assert commit_count(server) == before
    # Within the limit, a paste of files alone (no text) is fine.
    page.evaluate("document.getElementById('paste-form').dataset.maxSize = '1048576'")
    page.get_by_role("button", name="Paste").click()
    page.wait_for_url(re.compile(r".*/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}$"))
    rp = reader()
    rp.goto(page.url)
    rp.locator("#paste-files li").first.wait_for()
    assert rp.locator("#paste-files li").count() == 1
    assert rp.locator("#paste").is_hidden() and rp.locator("#paste-actions").is_hidden()


# -- terminal client <-> browser ---------------------------------------------


def test_terminal_paste_opens_in_browser_and_browser_paste_in_terminal(
    page, server, encrypted_link, tmp_path
):
    src = tmp_path / "hello.rs"
    text = 'fn main() {\n    println!("from pasteur paste ✓");\n}\n'
    src.write_text(text)
    made = subprocess.run(
        [sys.executable, "-m", "pasteur", "paste", "-s", server.url, "--ln", str(src)],
        capture_output=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    page.goto(made.stdout.decode().strip())
    page.locator("#paste-code .hljs-keyword").first.wait_for()  # rust, guessed from .rs
    assert page.locator("#paste-code").inner_text() == text
    assert page.locator("#paste-gutter").inner_text() == "1\n2\n3"
    assert "numbered" in page.locator("#paste").get_attribute("class")

    got = subprocess.run([sys.executable, "-m", "pasteur", "get", encrypted_link],
                         capture_output=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == PYTHON_CODE


# -- issue 16: one look for both highlighters -------------------------------

# The colour of the first text node holding each word, in the paste's code.
COLOURS_OF = """(words) => {
  const code = document.querySelector("#paste pre.code code");
  const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
  const out = {};
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const w of words) {
      if (!(w in out) && n.data.includes(w)) out[w] = getComputedStyle(n.parentElement).color;
    }
  }
  out.text = getComputedStyle(code).color;
  return out;
}"""
WORDS = ["import", " os", "def", "greet", "name", "Say hello", "return", "Hello, ", "<b>not"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_plain_and_encrypted_pastes_look_the_same(browser, server, encrypted_link, scheme):
    """Pygments (server) and highlight.js (browser) colour a paste alike."""
    r = httpx.post(server.url + "/", files={"paste": (None, PYTHON_CODE), "hl": (None, "python")},
                   headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    context = browser.new_context(color_scheme=scheme)
    try:
        pg = context.new_page()
        pg.goto(f"{server.url}/{r.json()['code']}")
        plain = pg.evaluate(COLOURS_OF, WORDS)
        pg.goto(encrypted_link)
        pg.locator("#paste-code .hljs-keyword").first.wait_for()
        encrypted = pg.evaluate(COLOURS_OF, WORDS)
    finally:
        context.close()
    assert plain == encrypted
    # Highlighted: keywords, names defined, strings and comments have colours
    # of their own; names used and the f-string's insides do not.
    assert len({plain[w] for w in ("def", "greet", "Say hello", "<b>not", "text")}) == 5, plain
    assert plain[" os"] == plain["name"] == plain["text"]


# -- issue 16: accessibility (axe-core) on every kind of page ----------------

# axe-core from the npm registry (scripts/vendor-axe), for the tests only.
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
}"""


# Most token kinds, and a line too long for the page (a scrolling code block).
RICH_CODE = PYTHON_CODE + (
    "@cache\n"
    "class Point(Base):\n"
    "    n = len([1, 2.5, None, True, self])  # count\n"
    "    print(f'{n!r}\\n', r'\\d+', b'x')\n"
    f"    long = '{'long ' * 300}'\n"
)


def axe(pg) -> list[dict]:
    """The page's axe-core violations (the script is evaluated through the
    DevTools protocol: the page's CSP, which allows no inline script, stays on)."""
    pg.evaluate(AXE.read_text("utf-8"))
    return pg.evaluate(AXE_RUN)


def page_kinds(pg, server, encrypted_link) -> dict[str, str]:
    """Visits every kind of page; returns {kind: URL audited} with the page left on each."""
    def post(**fields: str) -> str:
        r = httpx.post(server.url + "/", files={k: (None, v) for k, v in fields.items()},
                       headers={"accept": "application/json"})
        assert r.status_code == 201, r.text
        return r.json()["code"]

    rich_key, rich_iv, rich_ct = crypto.encrypt(crypto.make_payload(RICH_CODE, "python", True))
    key, iv, ct, salt, it = crypto.encrypt_with_password(
        crypto.make_payload("behind a password\n", "", False), "sesame")
    return {
        "form": "/",
        "plain": f"/{post(paste=RICH_CODE, hl='python', ln='true')}",
        "encrypted": f"/{post(paste=rich_ct, iv=rich_iv, encrypted='true')}#{rich_key}",
        "encrypted, wrong key": encrypted_link.removeprefix(server.url)[:-4] + "AAAA",
        "password": f"/{post(paste=ct, iv=iv, encrypted='true', salt=salt, iter=str(it))}#{key}",
        "burn, plain": f"/{post(paste='once', burn='true')}",
        "burn, encrypted": f"/{post(paste=ct, iv=iv, encrypted='true', burn='true')}#{key}",
        "delete": f"/{post(paste='to delete')}/delete",
        "error 404": "/no-such-page-here",
        "error 400": f"/{post(paste='x')}?hl=klingon",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_any_page(browser, server, encrypted_link, scheme):
    context = browser.new_context(color_scheme=scheme)
    found: dict[str, list[dict]] = {}
    try:
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        for kind, path in page_kinds(pg, server, encrypted_link).items():
            pg.goto(server.url + path)
            pg.wait_for_load_state("networkidle")
            if kind == "encrypted":
                pg.locator("#paste-code .hljs-keyword").first.wait_for()
            found[kind] = axe(pg)
        # The creator's views (QR code, delete button), plain and encrypted.
        for encrypted in (False, True):
            fill_form(pg, server, PYTHON_CODE, lang="python", ln=True, encrypted=encrypted)
            pg.get_by_role("button", name="Paste").click()
            pg.locator("#paste-qr canvas").wait_for()
            found[f"creator, {'encrypted' if encrypted else 'plain'}"] = axe(pg)
    finally:
        context.close()
    print(f"axe violations ({scheme}):",
          {kind: [f"{v['id']} ({v['impact']})" for v in vs] for kind, vs in found.items() if vs})
    bad = {kind: [v for v in vs if v["impact"] in ("critical", "serious")]
           for kind, vs in found.items()}
    assert not any(bad.values()), bad
    assert len(found) == 12
    assert not [v for v in found["form"] if v["id"] == "page-has-heading-one"]


def test_code_block_scrolls_with_the_keyboard(page, server):
    """Tab reaches the code block (it has a name), and arrow keys scroll a long line."""
    long_line = "x = '" + "long " * 300 + "'\n"
    r = httpx.post(server.url + "/", files={"paste": (None, long_line), "hl": (None, "python")},
                   headers={"accept": "application/json"})
    key, iv, ct = crypto.encrypt(crypto.make_payload(long_line, "python", True))
    for url in (f"{server.url}/{r.json()['code']}",
                f"{server.url}/{post_encrypted(server, ct, iv)}#{key}"):
        page.goto(url)
        block = page.locator("#paste pre.code")
        block.locator(".hljs-string").wait_for()
        assert block.get_attribute("aria-label").startswith("Text of paste")
        for _ in range(30):
            if page.evaluate("document.activeElement.matches('#paste pre.code')"):
                break
            page.keyboard.press("Tab")
        else:
            pytest.fail(f"Tab never reached the code block of {url}")
        assert block.evaluate("e => e.scrollLeft") == 0
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.querySelector('#paste pre.code').scrollLeft > 0")


# -- issue 16: big pastes show at once, in blocks, coloured afterwards -------


def big_python(size: int) -> str:
    import sysconfig

    text = ""
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text += f.read_text("utf-8", "replace")
        if len(text) > size:
            break
    return text[: text.rfind("\n", 0, size) + 1]


BLOCKS = """() => {
  const code = document.querySelector("#paste pre.code code");
  return { text: code.textContent, blocks: code.querySelectorAll(":scope > .chunk").length,
           stray: code.querySelectorAll(":scope > :not(.chunk)").length,
           gutter: document.querySelector("#paste .gutter").textContent };
}"""


def test_big_pastes_come_in_blocks_and_are_coloured_later(page, server):
    """Plain: the server sends the text in blocks of 200 lines and later.js
    colours it; encrypted: show.js does the same. Timing: bench/big_page.py."""
    text = big_python(300_000)
    lines = text.count("\n")
    numbers = "\n".join(map(str, range(1, lines + 1)))
    r = httpx.post(server.url + "/", files={"paste": (None, text), "hl": (None, "python"),
                                            "ln": (None, "true")},
                   headers={"accept": "application/json"}, timeout=60)
    key, iv, ct = crypto.encrypt(crypto.make_payload(text, "python", True))
    for url in (f"{server.url}/{r.json()['code']}",
                f"{server.url}/{post_encrypted(server, ct, iv)}#{key}"):
        page.goto(url)
        page.locator("#paste .hljs-keyword").first.wait_for(timeout=60_000)
        got = page.evaluate(BLOCKS)
        assert got == {"text": text, "blocks": -(-lines // 200), "stray": 0, "gutter": numbers}
