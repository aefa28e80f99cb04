"""HTTPS with given certificate files: ALPN h2 and HTTP/1.1, port-80 redirect, hot reload,
and the real `pasteur serve` with TLS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pasteur.tls.listener import HttpsError, fingerprint
from tests.fixtures_acme import free_port, running, self_signed, wait_port

pytestmark = pytest.mark.timeout(60)


def tls_argv(cert: Path, key: Path, port: int, *extra: str) -> list[str]:
    return ["--tls-cert", str(cert), "--tls-key", str(key), "--port", str(port), *extra]


def client(cafile: Path, http2: bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(http2=http2, verify=ssl.create_default_context(cafile=str(cafile)))


def served_fingerprint(response: httpx.Response) -> str:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return hashlib.sha256(ssl_object.getpeercert(binary_form=True)).hexdigest()


async def test_alpn_h2_and_http11(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    async with running(*tls_argv(cert, key, port)):
        url = f"https://127.0.0.1:{port}/"
        async with client(cert) as c:
            r = await c.get(url)
            assert (r.http_version, r.text) == ("HTTP/2", "hello over HTTP/2\n")
        async with client(cert, http2=False) as c:
            r = await c.get(url)
            assert (r.http_version, r.text) == ("HTTP/1.1", "hello over HTTP/1.1\n")
        # a client offering h2 and http/1.1 by ALPN gets h2
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                  server_hostname="localhost")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        writer.close()


async def test_port_80_redirects_and_answers_challenges(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port, http_port = free_port(), free_port()
    argv = tls_argv(cert, key, port, "--http-port", str(http_port), "--hostname", "paste.test")
    async with running(*argv) as server, httpx.AsyncClient() as c:
        base = f"http://127.0.0.1:{http_port}"
        r = await c.get(f"{base}/abcd?raw=1")
        assert r.status_code == 301
        assert r.headers["location"] == f"https://paste.test:{port}/abcd?raw=1"
        r = await c.post(f"{base}/", content=b"x")
        assert r.status_code == 308
        r = await c.get(f"{base}/.well-known/acme-challenge/tok")
        assert r.status_code == 404
        server.tokens["tok"] = "tok.thumbprint"
        r = await c.get(f"{base}/.well-known/acme-challenge/tok")
        assert (r.status_code, r.text) == (200, "tok.thumbprint")


async def test_changed_files_are_swapped_in_keeping_open_connection(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "live.test", prefix="live")
    new_cert, new_key = self_signed(tmp_path, "next.test", prefix="next")
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + new_cert.read_bytes())
    port = free_port()
    async with running(*tls_argv(cert, key, port), watch_interval=0.05) as server:
        url = f"https://127.0.0.1:{port}/"
        async with client(both) as c:
            first = await c.get(url)
            old = served_fingerprint(first)
            assert old == fingerprint(cert.read_bytes())
            # a bad pair on disk is refused and the current certificate kept
            shutil.copy(new_cert, cert)
            await asyncio.sleep(0.3)
            assert server.tls.fingerprint == old
            shutil.copy(new_key, key)
            for _ in range(100):
                if server.tls.fingerprint != old:
                    break
                await asyncio.sleep(0.02)
            assert server.tls.fingerprint == fingerprint(new_cert.read_bytes())
            again = await c.get(url)  # same HTTP/2 connection, still open
            assert again.extensions["network_stream"] is first.extensions["network_stream"]
            assert again.status_code == 200 and served_fingerprint(again) == old
        async with client(both) as fresh:
            assert served_fingerprint(await fresh.get(url)) == server.tls.fingerprint


async def test_bad_certificate_files(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    other_cert, _ = self_signed(tmp_path, prefix="other")
    with pytest.raises(HttpsError, match="cannot read .*missing.pem"):
        async with running(*tls_argv(tmp_path / "missing.pem", key, free_port())):
            pass
    with pytest.raises(HttpsError, match="cannot use certificate"):
        async with running(*tls_argv(other_cert, key, free_port())):
            pass


def pasteur(*argv: str, data: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTEUR_")}
    return subprocess.Popen([sys.executable, "-m", "pasteur", "serve", "--data", str(data),
                             *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (["--https"], "pasteur: --https needs --hostname NAME"),
        (["--https", "--hostname", "a.test", "--acme-directory",
          f"https://127.0.0.1:{free_port()}/dir", "--http-port", str(free_port()),
          "--https-port", str(free_port())], "pasteur: cannot reach ACME server"),
    ]
    for argv, message in cases:
        proc = pasteur(*argv, data=tmp_path / "d")
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1
        last = err.decode().strip().splitlines()[-1]
        assert last.startswith(message), err.decode()


def test_cli_serves_the_app_over_h2(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = pasteur(*tls_argv(cert, key, port), data=tmp_path / "d")
    try:
        wait_port(port, proc, timeout=40)  # a loaded machine starts slowly
        deadline = time.monotonic() + 10
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(cert))) as c:
            while True:
                try:
                    r = c.get(f"https://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        assert r.status_code == 200 and r.http_version == "HTTP/2"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode in (0, -15)


def test_terminal_client_over_https(tmp_path: Path) -> None:
    """pasteur paste / get against an HTTPS server, verified with --cacert."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = pasteur(*tls_argv(cert, key, port), data=tmp_path / "d")
    server = f"https://127.0.0.1:{port}"

    def client(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pasteur", *args], input=stdin,
                              capture_output=True, timeout=60)

    try:
        wait_port(port, proc, timeout=40)  # a loaded machine starts slowly
        made = client("paste", "-s", server, "--cacert", str(cert), stdin=b"over TLS\n")
        assert made.returncode == 0, made.stderr
        url = made.stdout.decode().strip()
        assert url.startswith(server + "/") and "#" in url
        got = client("get", url, "--cacert", str(cert))
        assert got.returncode == 0 and got.stdout == b"over TLS\n"
        unverified = client("get", url)  # the self-signed certificate is not trusted
        assert unverified.returncode == 1 and b"cannot reach" in unverified.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
