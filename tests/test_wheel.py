"""The built wheel is complete: installed into a clean virtual environment, away
from the source tree, it serves the form, a paste and every static file they
reference (the templates and static files are package data: a wheel without
them starts, then fails on the first page).

The wheel is built from a copy of the checkout's files (tracked and new,
not ignored), so no build directory lands in the checkout; its dependencies
come from the package index (pip's cache makes a second run quick).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .checkout import copy_checkout
from .ports import free_port
from .processes import stop

ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')

pytestmark = pytest.mark.slow


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (it would import the checkout's code) and no PASTEUR_* flags."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PASTEUR_")}


def run(*args: str | Path, cwd: Path) -> str:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    return out.stdout


def build_and_install(tmp_path: Path) -> Path:
    source, dist, venv = tmp_path / "source", tmp_path / "dist", tmp_path / "venv"
    copy_checkout(source)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source, cwd=tmp_path)
    wheels = list(dist.glob("pasteur-*.whl"))
    assert len(wheels) == 1, wheels
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "pip", "install", "-q", wheels[0], cwd=tmp_path)
    where = run(venv / "bin" / "python", "-c", "import pasteur; print(pasteur.__file__)",
                cwd=tmp_path)
    assert where.startswith(str(venv)), f"pasteur imported from {where}, not the clean venv"
    return venv


def assets_resolve(client: httpx.Client, page: str) -> list[str]:
    assets = ASSET.findall(page)
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and r.content, f"{asset}: {r.status_code}"
    return assets


def test_wheel_serves_the_form_and_a_paste(tmp_path: Path) -> None:
    venv = build_and_install(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [venv / "bin" / "pasteur", "serve", "--port", str(port), "--data", tmp_path / "data"],
            cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.1)

            form = client.get("/")
            assert form.status_code == 200 and "<form" in form.text
            assets = assets_resolve(client, form.text)
            assert any(a.split("?", 1)[0].endswith(".css") for a in assets), assets

            text = "def hello():\n    return 'from the wheel'\n"
            created = client.post("/", files={"paste": (None, text)}, data={"hl": "python"},
                                  headers={"accept": "application/json"})
            assert created.status_code == 201, created.text
            code = created.json()["code"]
            raw = client.get(f"/{code}?raw=true")
            assert raw.status_code == 200 and raw.text == text
            page = client.get(f"/{code}")
            assert page.status_code == 200 and "from the wheel" in page.text
            assert any("theme.css" in a for a in assets_resolve(client, page.text))

            # The terminal client of the wheel: an encrypted paste, read back.
            secret = tmp_path / "secret.txt"
            secret.write_text("encrypted by the wheel's client\n")
            link = run(venv / "bin" / "pasteur", "paste", "-s", url, secret, cwd=tmp_path).strip()
            enc = client.get(link.split("#", 1)[0].removeprefix(url))
            assert enc.status_code == 200
            assert any(a.split("?", 1)[0].endswith(".js") for a in assets_resolve(client, enc.text))
            assert "encrypted by" not in enc.text and "encrypted by" not in client.get(
                link.split("#", 1)[0].removeprefix(url) + "?raw=true").text
            got = run(venv / "bin" / "pasteur", "get", link, cwd=tmp_path)
            assert got == secret.read_text()
    finally:
        stop(proc, 15)
