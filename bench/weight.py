"""Static weight of a page: the page and every asset it references, as sent on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

TAG = re.compile(r"<(link|script|img)\b([^>]*)>", re.IGNORECASE)
ATTR = re.compile(r"""\b(href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
JS_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")
SKIP_REL = ("canonical", "alternate", "author", "license", "help", "search", "next", "prev")


@dataclass
class PageWeight:
    total: int = 0
    items: list[tuple[str, int, str]] = field(default_factory=list)  # url, bytes, encoding


def _assets_of_html(html: str) -> list[str]:
    out = []
    for tag, attrs in TAG.findall(html):
        rel = re.search(r"""\brel\s*=\s*["']([^"']+)["']""", attrs, re.IGNORECASE)
        if tag.lower() == "link" and rel and any(r in rel.group(1).lower() for r in SKIP_REL):
            continue
        for _, value in ATTR.findall(attrs):
            out.append(value)
    return out


def page_weight(url: str, encoding: str = "br") -> PageWeight:
    """Fetch ``url`` and, recursively, its same-origin stylesheets, scripts, imports, images."""
    origin = urlsplit(url).netloc
    result = PageWeight()
    seen: set[str] = set()
    queue = [url]
    with httpx.Client(headers={"accept-encoding": encoding}, timeout=10) as client:
        while queue:
            target = queue.pop(0)
            if target in seen:
                continue
            seen.add(target)
            response = client.get(target)
            response.raise_for_status()
            size = response.num_bytes_downloaded
            result.items.append((target, size, response.headers.get("content-encoding", "")))
            result.total += size
            ctype = response.headers.get("content-type", "")
            text = response.text if size else ""
            if "html" in ctype:
                refs = _assets_of_html(text)
            elif "javascript" in ctype:
                refs = JS_IMPORT.findall(text)
            elif "css" in ctype:
                refs = CSS_URL.findall(text)
            else:
                refs = []
            for ref in refs:
                if ref.startswith(("data:", "#", "mailto:", "javascript:")):
                    continue
                full = urljoin(target, ref).split("#", 1)[0]
                if urlsplit(full).netloc == origin and full not in seen:
                    queue.append(full)
    return result
