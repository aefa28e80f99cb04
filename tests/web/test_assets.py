"""The static bundle (``web/assets.py``): every module URL carries the hash of
its content, its imports' hashes included, and only hashed URLs are cached as
immutable."""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from pasteur.crypto import encrypt
from pasteur.web.assets import Bundle

STATIC = Path(str(resources.files("pasteur") / "static"))
SPECIFIER = re.compile(r"""\b(?:from|import)\s*\(?\s*["']([^"']+)["']""")
MODULE_TAG = re.compile(r'<(?:script type="module" src|link rel="modulepreload" href)="([^"]+)"')


@pytest.fixture
def static(tmp_path: Path) -> Path:
    """A copy of the bundle's files to change."""
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    return copy


def urls(bundle: Bundle) -> dict[str, str]:
    return {name: bundle.url(name) for name in bundle.assets}


def text(bundle: Bundle, name: str) -> str:
    return bundle.assets[name].variants[""].decode()


def test_a_changed_module_changes_its_url_and_its_importers(static: Path) -> None:
    before = urls(Bundle(static))
    with (static / "bytes.js").open("a") as f:
        f.write("// changed\n")
    bundle = Bundle(static)
    after = urls(bundle)
    changed = {name for name in before if before[name] != after[name]}
    # bytes.js, and the two modules importing it; nothing else.
    assert changed == {"bytes.js", "form.js", "show.js"}
    assert after["bytes.js"].removeprefix("/static/") in text(bundle, "form.js")


def test_a_change_deep_down_reaches_the_page_module(static: Path) -> None:
    """show.js (and later.js) -> languages.js -> a grammar: a changed grammar changes them all."""
    before = urls(Bundle(static))
    with (static / "hljs" / "languages" / "python.min.js").open("a") as f:
        f.write("// changed\n")
    after = urls(Bundle(static))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"hljs/languages/python.min.js", "languages.js", "show.js", "later.js"}


def test_every_import_in_the_bundle_is_hashed() -> None:
    bundle = Bundle()
    seen = 0
    for name, asset in bundle.assets.items():
        if not name.endswith((".js", ".mjs")):
            continue
        for spec in SPECIFIER.findall(asset.variants[""].decode()):
            if spec.startswith("."):
                target = urlsplit(urljoin(f"/static/{name}", spec))
                assert bundle.url(target.path.removeprefix("/static/")).endswith(
                    f"?{target.query}"), (name, spec)
                seen += 1
    assert seen > 50  # form.js, show.js, creator.js, languages.js


def test_an_import_outside_the_bundle_or_a_cycle_is_refused(static: Path) -> None:
    (static / "lines.js").write_text('import { x } from "./missing.js";\n')
    with pytest.raises(ValueError, match="missing.js: not in the bundle"):
        Bundle(static)
    (static / "lines.js").write_text('import { f } from "./show.js";\n')
    with pytest.raises(ValueError, match="import each other"):
        Bundle(static)


def module_urls(client: httpx.Client, page: str) -> set[str]:
    """Every module a page loads, its imports followed (static and dynamic)."""
    todo = [urljoin(page, u) for u in MODULE_TAG.findall(client.get(page).text)]
    found: set[str] = set()
    while todo:
        url = todo.pop()
        if url in found:
            continue
        found.add(url)
        r = client.get(url)
        assert r.status_code == 200, url
        todo += [urljoin(url, s) for s in SPECIFIER.findall(r.text) if s.startswith(".")]
    return found


def test_served_module_urls_are_hashed_and_immutable(shared_server) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=10) as client:
        key, iv, ct = encrypt({"v": 1, "text": "x", "lang": "python", "ln": False})
        r = client.post("/", files={"paste": (None, ct), "iv": (None, iv),
                                    "encrypted": (None, "true")},
                        headers={"accept": "application/json"})
        assert r.status_code == 201, r.text
        # The creator's page (creator.js and the QR encoder) of an encrypted paste.
        modules = module_urls(client, "/") | module_urls(client, f"/{r.json()['code']}")
        paths = {urlsplit(u).path for u in modules}
        assert {"/static/form.js", "/static/crypto.js", "/static/bytes.js", "/static/show.js",
                "/static/lines.js", "/static/creator.js", "/static/qr/qrcode.mjs",
                "/static/languages.js", "/static/hljs/core.min.js",
                "/static/hljs/languages/python.min.js"} <= paths, paths
        for url in modules:
            assert re.search(r"\?v=[0-9a-f]{16}$", url), url
            assert client.get(url).headers["cache-control"] == "public, max-age=31536000, immutable"
            bare = urlsplit(url).path
            for unhashed in (bare, bare + "?v=0123456789abcdef"):
                r = client.get(unhashed)
                assert r.status_code == 200
                assert r.headers["cache-control"] == "no-cache", unhashed
