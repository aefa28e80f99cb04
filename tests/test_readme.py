"""Every command of the README's ``sh`` blocks runs, against real servers.

Each block becomes one bash script (``set -euo pipefail``; a block's commands
share its directory and variables, as in a terminal), run in a directory that
holds the files the examples name and a ``.venv`` link to this interpreter's
virtual environment, after ``source .venv/bin/activate`` as the README asks.
The README's server, ``http://127.0.0.1:4343``, becomes a fixture's;
``Ab3x``, ``TOKEN`` and ``#KEY`` become a fresh paste's id, delete token and
key; ``curl`` fails on an HTTP error (``--fail-with-body``). A command that
serves (``pasteur serve``, ``git daemon``) gets a free loopback port, runs in
the background until the block ends and must answer first; ``10.0.0.2`` and
``0.0.0.0`` become 127.0.0.1; ``ssh-keyscan github.com`` scans the sshd of
tests/fixtures_git.py. A new command is run like the others: the test fails
until it works here or is listed in ``SKIPPED`` with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .checkout import copy_checkout
from .conftest import Server
from .fixtures_acme import self_signed
from .fixtures_git import GIT_ENV, Sshd, sshd  # noqa: F401  (the sshd fixture)
from .ports import free_port
from .processes import stop

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_SERVER = "http://127.0.0.1:4343"
VENV = Path(sys.prefix)

# Commands not run, with the reason. Each must still be in the README.
SKIPPED = {
    "scripts/test": "runs the whole suite, this file included (.ci/run runs it)",
    "pasteur serve --bind 0.0.0.0 --https --hostname paste.example.org --email you@example.org "
    "--production": "needs a public name pointing here and Let's Encrypt reaching port 80; "
    "tests/tls/test_acme.py runs --https with HTTP-01 against pebble",
    "pasteur serve --bind 0.0.0.0 --https --hostname paste.example.org --production "
    "--dns-key pasteur-update:hmac-sha256:SECRET --dns-addr 192.0.2.53 --dns-port 53":
    "needs Let's Encrypt and a public zone; tests/tls/test_acme.py runs DNS-01 against pebble "
    "and knot",
    "PASTEUR_SSH_KEY='ed25519:3q2+7w…=' pasteur serve -r git@github.com:me/pastes.git "
    "--ssh-auth "
    "SHA256:p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM,"
    "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU":
    "needs a GitHub repository with the key as a deploy key; tests/sync/test_syncer.py runs "
    "ssh remotes with --ssh-auth against sshd",
    "PASTEUR_REMOTE_TOKEN=github_pat_… pasteur serve -r https://github.com/me/pastes.git":
    "needs a GitHub token; tests/sync/test_syncer.py runs https remotes with --remote-token "
    "against lighttpd",
}
# Commands run by a test of their own.
ELSEWHERE = {"scripts/run": "test_scripts_run_from_a_fresh_copy"}
# Fences whose language is not sh are not run: these hold output, files or configuration.
NOT_SHELL = {"json", ""}
# The files the examples name.
FILES = {
    "file.py": "print('file.py')\n", "x.py": "x = 1\n", "notes.py": "notes = True\n",
    "notes.txt": "notes\n", "log.txt": "a log line\n", "summary.txt": "summary\n",
    "data.csv": "a,b\n1,2\n", "report.pdf": "%PDF-1.4 not really\n", "photo.jpg": "JFIF\n",
}


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes or a word stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def fences(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(\S*)\n(.*?)^```", text, re.M | re.S)


def commands(block: str) -> list[str]:
    """A block's commands: `$ ` lines when it shows a session, else every line
    but comments, with continuation lines joined."""
    lines = block.splitlines()
    session = any(line.startswith("$ ") for line in lines)
    found, pending = [], ""
    for line in lines:
        if session:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        line = strip_comment(line)
        if not line.strip() and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        found.append((pending + line.strip()).strip())
        pending = ""
    return found


def readme_blocks() -> list[list[str]]:
    return [commands(body) for lang, body in fences(README.read_text()) if lang == "sh"]


BLOCKS = readme_blocks()


def test_every_fence_is_sh_or_not_shell() -> None:
    langs = {lang for lang, _ in fences(README.read_text())}
    assert langs <= NOT_SHELL | {"sh"}, (
        f"fences {langs - NOT_SHELL - {'sh'}}: write shell as ```sh, which this test runs")


def test_every_listed_command_is_in_the_readme() -> None:
    everything = {cmd for block in BLOCKS for cmd in block}
    stale = (set(SKIPPED) | set(ELSEWHERE)) - everything
    assert not stale, f"listed but no longer in the README: {stale}"


def test_readme_puts_pasteur_within_reach_before_using_it() -> None:
    """The blocks run after `source .venv/bin/activate` because the README says
    so, before its first `pasteur` example: scripts/setup installs it only there."""
    flat = [cmd for block in BLOCKS for cmd in block]
    uses = [i for i, cmd in enumerate(flat) if re.search(r"(^|[ &;=]|\$\()pasteur ", cmd)
            and "source" not in cmd]
    assert "source .venv/bin/activate" in flat, "the README no longer says how to reach pasteur"
    assert flat.index("source .venv/bin/activate") < uses[0], flat[uses[0]]


@dataclass
class Block:
    """Turns a block's commands into one script."""

    work: Path
    server: Server
    sshd_of: Callable[[], Sshd]
    lines: list[str] = field(default_factory=list)

    def paste(self) -> tuple[str, str]:
        r = httpx.post(self.server.url + "/", files={"paste": (None, "Ab3x\n")},
                       headers={"accept": "application/json"})
        assert r.status_code == 201, r.text
        return r.json()["code"], r.json()["delete_token"]

    def encrypted_paste(self) -> str:
        (self.work / "attached.txt").write_text("attached\n")
        out = subprocess.run(
            [str(VENV / "bin" / "pasteur"), "paste", "-s", self.server.url, "-a", "attached.txt",
             "notes.txt"], cwd=self.work, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def serve(self, cmd: str, url: str) -> None:
        log = f"serve-{len(self.lines)}.log"
        self.lines.append(f"{cmd} >{log} 2>&1 &")
        self.lines.append(f"wait_http {shlex.quote(url)} || {{ cat {log}; exit 1; }}")

    def add(self, readme_cmd: str) -> None:
        self.lines.append(f"echo {shlex.quote('+ ' + readme_cmd)} >&2")
        cmd = readme_cmd
        if "Ab3x#KEY" in cmd:
            cmd = cmd.replace(f"{README_SERVER}/Ab3x#KEY", self.encrypted_paste())
        if "Ab3x" in cmd:
            code, token = self.paste()
            cmd = cmd.replace("Ab3x", code).replace("TOKEN", token)
        cmd = cmd.replace(README_SERVER, self.server.url)
        cmd = re.sub(r"^curl ", "curl -sS --fail-with-body ", cmd)
        if cmd.startswith("ssh-keyscan github.com"):
            cmd = cmd.replace("github.com", f"-p {self.sshd_of().port} 127.0.0.1")
        cmd = cmd.replace("/tmp/host.pub", "host.pub")
        if re.match(r"^([A-Z_]+=\S+ )*pasteur serve\b", cmd):
            port = free_port()
            cmd = cmd.replace("--bind 0.0.0.0", "--bind 127.0.0.1").replace("10.0.0.2",
                                                                            "127.0.0.1")
            cmd = cmd.replace("git://127.0.0.1/", "git://127.0.0.1:$GIT_PORT/")
            cmd += f" --port {port} --data {self.work / f'data-{port}'}"
            scheme = "https" if "--tls-cert" in cmd else "http"
            self.serve(cmd, f"{scheme}://127.0.0.1:{port}/healthz")
            self.lines.append(f"SERVED=http://127.0.0.1:{port}")
        elif cmd.startswith("git daemon"):
            cmd = cmd.replace("10.0.0.2", "127.0.0.1") + " --port=$GIT_PORT"
            self.lines.append(f"{cmd} 2>git-daemon.log &")
            self.lines.append("wait_tcp $GIT_PORT")
        else:
            self.lines.append(cmd)
        self.lines.extend(self.checks(readme_cmd))

    def checks(self, readme_cmd: str) -> list[str]:
        """What a command must have done, beyond exiting 0."""
        if readme_cmd == "source .venv/bin/activate":
            return ['test "$(command -v pasteur)" = "$VIRTUAL_ENV/bin/pasteur"']
        if readme_cmd.startswith("pasteur serve -r git://"):
            return ["curl -sS --fail-with-body -F paste=synced $SERVED/",
                    "for i in $(seq 200); do",
                    '  [ "$(git -C git-pasteur rev-list --count main)" -ge 2 ] && break',
                    "  sleep 0.1",
                    "done",
                    # grep -q would exit at the first match and, under pipefail,
                    # the SIGPIPE of git log would fail the block (exit 141)
                    'grep -q synced <<<"$(git -C git-pasteur log -p main)"']
        if readme_cmd.endswith("--save-files out/"):
            return ["grep -qx attached out/attached.txt"]
        if readme_cmd.startswith("ssh-keygen -l"):
            fingerprint = self.sshd_of().fingerprints["ed25519"]
            return [f"grep -q {shlex.quote(fingerprint)} <<<\"$(ssh-keygen -l -E sha256 "
                    "-f host.pub)\""]
        return []

    def script(self) -> str:
        preamble = [
            "set -euo pipefail",
            "trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT",
            "wait_http() { for _ in $(seq 600); do curl -skf \"$1\" >/dev/null && return 0;"
            " sleep 0.1; done; echo \"no answer at $1\" >&2; return 1; }",
            "wait_tcp() { for _ in $(seq 100); do (: <>/dev/tcp/127.0.0.1/$1) 2>/dev/null"
            " && return 0; sleep 0.1; done; return 1; }",
            f"GIT_PORT={free_port()}",
        ]
        if "source .venv/bin/activate" not in "\n".join(self.lines):
            preamble.append("source .venv/bin/activate")
        return "\n".join(preamble + self.lines) + "\n"


def block_workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(VENV)
    for name, text in FILES.items():
        (work / name).write_text(text)
    cert, key = self_signed(work)
    cert.rename(work / "cert.pem")
    key.rename(work / "key.pem")
    return work


@pytest.mark.parametrize("index", range(len(BLOCKS)),
                         ids=[f"{i}-{b[0].split()[0] if b else 'empty'}"
                              for i, b in enumerate(BLOCKS)])
def test_readme_block_runs(index: int, tmp_path: Path, shared_server: Server,
                           request: pytest.FixtureRequest) -> None:
    todo = [cmd for cmd in BLOCKS[index] if cmd not in SKIPPED and cmd not in ELSEWHERE]
    if not todo:
        pytest.skip("every command of this block is listed: " + "; ".join(
            f"{c}: {SKIPPED.get(c) or ELSEWHERE[c]}" for c in BLOCKS[index]))
    work = block_workdir(tmp_path)
    block = Block(work, shared_server, lambda: request.getfixturevalue("sshd"))
    for cmd in todo:
        block.add(cmd)
    env = {k: v for k, v in {**os.environ, **GIT_ENV}.items() if not k.startswith("PASTEUR_")}
    env["PASTEUR_SERVER"] = shared_server.url  # the client's default is the README's server
    script = block.script()
    out = subprocess.run(["bash", "-c", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"{script}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"


@pytest.mark.slow
def test_scripts_run_from_a_fresh_copy(tmp_path: Path) -> None:
    """`scripts/run` on a fresh checkout: says what it does, sets up and serves."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PASTEUR_")}
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["scripts/run", "--port", str(port), "--data", "d"],
                                cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        said = log.read_text()
        steps = ["setup: checking Debian packages", "setup: creating the virtual environment",
                 "setup: installing Python packages", "setup: installed .venv/bin/pasteur",
                 "run: starting .venv/bin/pasteur serve", "to use the pasteur command"]
        where = [said.find(step) for step in steps]
        assert -1 not in where and where == sorted(where), said
        assert (checkout / ".venv" / "bin" / "pasteur").exists()
    finally:
        stop(proc, 15)
