"""The create flow and the clear states in headless Chromium (issue 16 items 1, 6):
the creator's first view (link box with the key, delete link once, commit link),
delete behind a confirmation, 390 px wide pages, the plain-http banner, Copy on
plain pastes, a status that neither moves the page nor stays, downloads named
by language, and 410 for a burned paste on reload."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from .fixtures_browser import INSECURE_HOST

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

COMMIT_URL = "https://git.example.test/pastes/commit/{commit}"
SHOTS = Path("/tmp/pasteur-shots")  # screenshots for the closing note; not committed
CODE = "def greet(name):\n    return f'Hello, {name}!'  # " + "x" * 150 + "\n"
LINK = re.compile(r".*/([A-Za-z0-9_-]+)#([A-Za-z0-9_-]{43})$")
PLAIN = re.compile(r".*/([A-Za-z0-9_-]+)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from .conftest import make_server

    srv = make_server(tmp_path_factory.mktemp("flow"), "--rate-limit", "off",
                      "--commit-url", COMMIT_URL)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def visitor(browser):
    """A new browser context per call (its own cookies), errors collected and checked."""
    contexts = []

    def open_page(width: int = 1280, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height},
                                      permissions=["clipboard-read", "clipboard-write"],
                                      accept_downloads=True)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        pg.errors = []
        pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
        pg.on("pageerror", lambda e: pg.errors.append(f"page error: {e}"))
        pg.requests = []
        pg.on("request", lambda r: pg.requests.append((r.url, r.post_data_buffer or b"")))
        return pg

    yield open_page
    for context in contexts:
        for pg in context.pages:
            real = [e for e in pg.errors if "Failed to load resource" not in e
                    and "Cross-Origin-Opener-Policy" not in e]
            assert real == [], real
        context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def paste(page, server, text: str, lang: str = "", encrypted: bool = True, **checks: bool):
    page.goto(server.url + "/")
    page.get_by_label("Your text").fill(text)
    page.get_by_label("Language").select_option(lang)
    page.get_by_label("Encrypted").set_checked(encrypted)
    for label, on in checks.items():
        page.get_by_label(label.replace("_", " ").capitalize()).set_checked(on)
    page.get_by_role("button", name="Paste", exact=True).click()
    page.wait_for_url(LINK if encrypted else PLAIN)
    return (LINK if encrypted else PLAIN).fullmatch(page.url).group(1)


def wait_text(page) -> None:
    """Until an encrypted paste's text is decrypted and shown."""
    page.locator("#paste-code").filter(has_text="greet").wait_for()


def status_of(server, path: str) -> int:
    return httpx.get(f"{server.url}{path}", headers={"accept": "text/html"}).status_code


def wait_until(what: str, predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_first_view_of_an_encrypted_paste(visitor, server):
    page = visitor()
    pid = paste(page, server, CODE, lang="python")
    link = page.url
    key = link.split("#", 1)[1]
    # The full link, key included, in a read-only box; Copy link copies it.
    box = page.get_by_label("Link to share")
    wait_until("the link box", lambda: box.input_value() == link)
    assert box.get_attribute("readonly") is not None
    page.get_by_role("button", name="Copy link").click()
    assert page.evaluate("navigator.clipboard.readText()") == link
    # the copy is asynchronous: wait for the status rather than read it at once
    playwright_api.expect(page.locator("#paste-link-status")).to_have_text("Copied.")
    # The delete link, with its own Copy.
    delete_link = page.get_by_label("Delete link").input_value()
    assert re.fullmatch(rf"{re.escape(server.url)}/{pid}/delete\?token=[A-Za-z0-9_-]+", delete_link)
    page.get_by_role("button", name="Copy", exact=True).first.click()
    # The commit link, there on the first view (waited for: creates are
    # answered before their commit).
    commit = page.get_by_role("link", name="the commit that added it").get_attribute("href")
    assert re.fullmatch(r"https://git\.example\.test/pastes/commit/[0-9a-f]{40}", commit)
    assert page.locator(".paste-meta .commit").get_attribute("href") == commit
    wait_text(page)
    shot(page, "after-first-view-encrypted")
    # The key was never sent: not in any URL or body the page requested.
    for url, body in page.requests:
        assert key not in url.split("#")[0] and key.encode() not in body
    # Once: a reload has no link box and no delete link; delete stays offered.
    page.reload()
    wait_text(page)
    assert page.locator("#paste-link").count() == 0
    assert page.locator("#delete-link").count() == 0
    assert delete_link not in page.content()
    assert page.get_by_role("link", name="Delete this paste").is_visible()


def test_delete_asks_for_confirmation(visitor, server):
    page = visitor()
    pid = paste(page, server, "delete me\n", encrypted=False)
    delete_link = page.get_by_label("Delete link").input_value()
    # The creator: one click only opens the confirmation; nothing is deleted.
    page.get_by_role("link", name="Delete this paste").click()
    page.get_by_role("heading", name=f"Delete paste {pid}?").wait_for()
    shot(page, "after-delete-confirm")
    assert status_of(server, f"/{pid}") == 200
    page.get_by_role("link", name="Keep it").click()
    page.wait_for_url(PLAIN)
    assert status_of(server, f"/{pid}") == 200
    # The delete link, opened in another browser (no creator cookie): the same
    # confirmation, then deleted.
    other = visitor()
    other.goto(delete_link)
    assert status_of(server, f"/{pid}") == 200  # a GET deletes nothing
    other.get_by_role("button", name="Delete it for everyone").click()
    other.get_by_role("heading", name="Deleted").wait_for()
    assert status_of(server, f"/{pid}") == 404


def test_keep_it_keeps_the_key_of_an_encrypted_paste(visitor, server):
    """From an encrypted paste's page, "Delete this paste…" then "Keep it" comes back to
    the paste decrypted: the key rides in the fragment both ways (never sent)."""
    page = visitor()
    pid = paste(page, server, CODE, lang="python")
    link = page.url
    key = link.split("#", 1)[1]
    wait_text(page)
    page.get_by_role("link", name="Delete this paste").click()
    page.get_by_role("heading", name=f"Delete paste {pid}?").wait_for()
    assert page.url == f"{server.url}/{pid}/delete#{key}"
    keep = page.get_by_role("link", name="Keep it")
    playwright_api.expect(keep).to_have_attribute("href", f"/{pid}#{key}")
    keep.click()
    page.wait_for_url(link)
    wait_text(page)  # decrypted again
    assert page.locator("#paste-status").is_hidden()
    assert status_of(server, f"/{pid}") == 200
    # The key was never sent: not in any URL or body the page requested.
    for url, body in page.requests:
        assert key not in url.split("#")[0] and key.encode() not in body
    # The delete link opened elsewhere has no key to keep: "Keep it" is the bare paste.
    other = visitor()
    other.goto(f"{server.url}/{pid}/delete?token=nope")
    playwright_api.expect(other.get_by_role("link", name="Keep it")).to_have_attribute(
        "href", f"/{pid}")


def test_plain_paste_copy_status_and_download_name(visitor, server):
    page = visitor()
    text = "import os\nprint(os.getcwd())\n"
    pid = paste(page, server, text, lang="python", encrypted=False, line_numbers=True)
    assert page.get_by_label("Link to share").input_value() == f"{server.url}/{pid}"
    page.reload()  # the reader's view, without the creator's first-view panel
    status = page.locator("#paste-copy-status")
    assert status.get_attribute("role") == "status"
    assert status.get_attribute("aria-live") == "polite"
    before = page.locator("#paste").bounding_box()
    button = page.get_by_role("button", name="Copy", exact=True)
    button_before = button.bounding_box()
    button.click()
    assert page.evaluate("navigator.clipboard.readText()") == text  # no line numbers
    playwright_api.expect(status).to_have_text("Copied.")
    shot(page, "after-plain-copied")
    # Nothing moved when the status appeared, and it goes away by itself.
    assert page.locator("#paste").bounding_box() == before
    assert button.bounding_box() == button_before
    wait_until("the status to clear", lambda: status.inner_text() == "")
    assert page.locator("#paste").bounding_box() == before
    # Downloads are named by language.
    download_link = page.get_by_role("link", name="Download")
    assert download_link.get_attribute("download") == f"{pid}.py"
    with page.expect_download() as got:
        download_link.click()
    assert got.value.suggested_filename == f"{pid}.py"
    none = visitor()
    pid2 = paste(none, server, "no language\n", encrypted=False)
    assert none.get_by_role("link", name="Download").get_attribute("download") == f"{pid2}.txt"


def test_encrypted_download_named_by_language_and_status_clears(visitor, server):
    page = visitor()
    pid = paste(page, server, CODE, lang="python")
    reader = visitor()
    reader.goto(page.url)
    wait_text(reader)
    assert reader.get_by_role("link", name="Download").get_attribute("download") == f"{pid}.py"
    before = reader.locator("#paste").bounding_box()
    reader.get_by_role("button", name="Copy", exact=True).click()
    assert reader.evaluate("navigator.clipboard.readText()") == CODE
    status = reader.locator("#paste-copy-status")
    playwright_api.expect(status).to_have_text("Copied.")
    assert reader.locator("#paste").bounding_box() == before
    assert reader.locator("#paste-status").is_hidden()  # not the decryption status
    wait_until("the status to clear", lambda: status.inner_text() == "")


def no_overflow(page) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.body.scrollWidth") <= width
    for button in page.locator("button:visible, .actions a:visible, a.danger:visible").all():
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, \
            (button.inner_text(), box, width)


def test_every_view_fits_390px(visitor, server):
    page = visitor(390, 844)
    page.goto(server.url + "/")
    no_overflow(page)
    page.get_by_role("button", name="Paste", exact=True).scroll_into_view_if_needed()
    shot(page, "after-form-390")
    pid = paste(page, server, CODE, lang="python")
    wait_text(page)
    no_overflow(page)
    shot(page, "after-first-view-encrypted-390")
    page.get_by_role("button", name="Copy link").click()
    # the copy is asynchronous: wait for the status rather than read it at once
    playwright_api.expect(page.locator("#paste-link-status")).to_have_text("Copied.")
    page.reload()
    wait_text(page)
    no_overflow(page)
    page.get_by_role("link", name="Delete this paste").click()
    page.get_by_role("button", name="Delete it for everyone").wait_for()
    no_overflow(page)
    pid2 = paste(page, server, CODE, lang="python", encrypted=False, line_numbers=True)
    no_overflow(page)
    shot(page, "after-first-view-plain-390")
    page.goto(f"{server.url}/{pid2}")
    no_overflow(page)
    page.get_by_role("button", name="Copy", exact=True).click()
    no_overflow(page)
    page.goto(f"{server.url}/nosuch")
    no_overflow(page)
    assert pid and pid2


def test_plain_http_banner_and_clear_default(visitor, server):
    page = visitor()
    insecure = server.url.replace("127.0.0.1", INSECURE_HOST)
    page.goto(insecure + "/")
    assert page.evaluate("window.isSecureContext") is False
    banner = page.locator("#insecure-banner")
    assert banner.is_visible()
    said = banner.inner_text()
    assert "cannot encrypt" in said and "plain http" in said and insecure in said
    # At the top: before the form, in the first screen.
    assert banner.bounding_box()["y"] < page.get_by_label("Your text").bounding_box()["y"]
    assert banner.bounding_box()["y"] < 200
    assert not page.get_by_label("Encrypted").is_checked()
    assert page.locator("#crypto-note").is_hidden()  # "Encrypted in your browser": not here
    shot(page, "after-insecure-banner")
    page.get_by_label("Your text").fill("in clear on plain http\n")
    page.get_by_role("button", name="Paste", exact=True).click()
    page.wait_for_url(PLAIN)
    assert "in clear on plain http" in page.locator("#paste").inner_text()
    # On a secure origin: no banner, encrypted by default, its note shown.
    secure = visitor()
    secure.goto(server.url + "/")
    assert secure.locator("#insecure-banner").is_hidden()
    assert secure.get_by_label("Encrypted").is_checked()
    assert secure.locator("#crypto-note").is_visible()
    secure.get_by_label("Encrypted").uncheck()
    assert secure.locator("#crypto-note").is_hidden()


def test_reloading_a_burned_paste_says_410(visitor, server):
    page = visitor()
    pid = paste(page, server, "read me once\n", encrypted=False, burn_after_reading=True)
    reader = visitor()
    reader.goto(f"{server.url}/{pid}")
    reader.get_by_role("button", name="Read it now").click()
    reader.get_by_text("read me once").wait_for()
    gone = reader.reload()
    assert gone.status == 410
    assert "read and deleted" in reader.locator("main").inner_text()
    shot(reader, "after-burned-410")
    assert page.reload().status == 410  # for its creator too
