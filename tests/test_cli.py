"""The command line: help, flags, environment variables and bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pasteur.cli import build_parser
from pasteur.config import parse_size


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pasteur", *args], capture_output=True,
                          text=True, timeout=30, env=env)


def test_help_documents_every_flag():
    out = run("serve", "--help").stdout
    for flag in ("--port", "--bind", "--data", "--length", "--max", "--title", "--subtitle",
                 "--auth", "PASTEUR_PORT", "PASTEUR_MAX"):
        assert flag in out
    assert run("--help").returncode == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--max", "12XB"], "max"),
        (["serve", "--port", "99999"], "port"),
        (["serve", "--length", "1"], "length"),
        (["serve", "--auth", "nopassword"], "USER:PASSWORD"),
        (["serve", "--frobnicate"], "unrecognized"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    assert needle in r.stderr


def test_no_command_prints_help():
    r = run()
    assert r.returncode == 2 and "serve" in r.stdout


@pytest.mark.parametrize(
    ("text", "size"),
    [("1MiB", 1 << 20), ("64KiB", 64 << 10), ("64k", 64 << 10), ("1000", 1000),
     ("2 MB", 2 << 20), ("1.5GiB", 3 << 29)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("PASTEUR_MAX", "64KiB")
    monkeypatch.setenv("PASTEUR_PORT", "5555")
    monkeypatch.setenv("PASTEUR_TITLE", "Env title")
    args = build_parser().parse_args(["serve"])
    assert args.max_size == 64 << 10 and args.port == 5555 and args.title == "Env title"
    args = build_parser().parse_args(["serve", "--port", "6000"])
    assert args.port == 6000  # a flag beats the environment


def test_bad_environment_variable_is_clear(monkeypatch):
    import os

    r = run("serve", env={**os.environ, "PASTEUR_MAX": "lots"})
    assert r.returncode == 2 and "PASTEUR_MAX" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("serve", "--port", str(port), "--data", str(tmp_path / "d"))
    assert r.returncode != 0
    assert "address already in use" in r.stderr.lower()


def test_server_env_config(server_factory):
    srv = server_factory(env={"PASTEUR_LENGTH": "7"})
    r = httpx.post(srv.url + "/", content=b"x")
    assert len(r.text.strip().rsplit("/", 1)[1]) == 7


@pytest.mark.parametrize(
    ("remote", "link"),
    [
        ("git@github.com:me/pastes.git", "https://github.com/me/pastes/commit/{commit}"),
        ("https://github.com/me/pastes", "https://github.com/me/pastes/commit/{commit}"),
        ("ssh://git@gitlab.com/group/sub/pastes.git",
         "https://gitlab.com/group/sub/pastes/-/commit/{commit}"),
        ("https://codeberg.org/me/p.git", "https://codeberg.org/me/p/commit/{commit}"),
        ("git://127.0.0.1/pastes", None),
        ("user@myhost:pastes.git", None),
        (None, None),
    ],
)
def test_commit_link_from_remote(remote, link):
    from pasteur.config import web_commit_url

    assert web_commit_url(remote) == link


def test_flags_become_typed_settings_once():
    from pasteur.cli import config_from
    from pasteur.config import SyncSettings, TlsSettings

    plain = config_from(build_parser().parse_args(["serve"]))
    assert plain.sync is None and plain.tls is None
    assert plain.repo_path == plain.paths.repo == Path("pasteur-data") / "repo.git"
    assert plain.paths.tmp == Path("pasteur-data") / "tmp"

    config = config_from(build_parser().parse_args([
        "serve", "--data", "/srv/p", "--remote", "git://h/r", "--sync-interval", "0",
        "--remote-token", "t", "--https", "--hostname", "a.test", "--https-port", "8443"]))
    assert config.sync == SyncSettings(url="git://h/r", token="t", interval=0.0,
                                       branch_from_head=True, branch_source="default")
    assert "'t'" not in repr(config.sync)  # secrets stay out of logs
    assert config.tls == TlsSettings(https=True, hostname="a.test", https_port=8443)
    assert config.paths.repo == Path("/srv/p/repo.git")
    assert config.commit_url is None


def test_sync_settings_cross_to_the_worker_whole(tmp_path):
    from pasteur.config import SyncSettings
    from pasteur.sync.worker import hello, read_hello

    settings = SyncSettings(url="ssh://git@h/r", branch="b", token="t", seed="s",
                            ssh_auth="SHA256:x", ssh_insecure=True, interval=5,
                            stuck_after=7, timeout_ms=1, connect_timeout_ms=2)
    line = hello(tmp_path, settings)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert read_hello(line) == (str(tmp_path), settings)


@pytest.mark.parametrize("flag", ["--port", "--https-port", "--http-port", "--dns-port"])
def test_every_port_flag_is_checked_alike(flag):
    r = run("serve", flag, "65536")
    assert r.returncode == 2
    assert f"{flag[2:]}: '65536' is not between 0 and 65535" in r.stderr
