"""contrib/pasteur.service: `systemd-analyze verify` accepts it, it keeps its
sandbox, and its `systemd-analyze security` exposure is the one docs/operations.md gives.

`verify` needs ExecStart's binary to exist, so each check runs on a copy whose
ExecStart points at this interpreter's `pasteur`. `security --offline=true`
(systemd 250 and later; Debian 12 has 252) scores a unit file without a running
systemd. Neither starts the service: no systemd runs here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .fixtures_git import SSH_SEED, Sshd, bare_remote, remote_ids, sshd  # noqa: F401
from .ports import free_port, wait_port
from .processes import stop

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "pasteur.service"
HTTPS_DROPIN = ROOT / "contrib" / "pasteur-https.conf"
DOCS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
INSTALLED = "/opt/pasteur/bin/pasteur"  # where docs/operations.md installs the wheel
PASTEUR = Path(sys.executable).with_name("pasteur")

# MemoryDenyWriteExecute=yes, as the kernel's own PR_SET_MDWE (Linux 6.3+):
# mmap and mprotect refuse memory both writable and executable, for the process
# and everything it starts (inherited across fork and execve).
MDWE_EXEC = """import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
"""
W_X = """import mmap
mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
"""

# The sandbox the unit must keep (a directive dropped raises the exposure too,
# but this names it).
SANDBOX = {
    "DynamicUser": "yes",
    "StateDirectory": "pasteur",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
}


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: install Debian's systemd (scripts/setup --test)"
    return tool


def local_unit(tmp_path: Path, *parts: Path) -> Path:
    """The unit (and drop-ins, appended) with ExecStart at this venv's pasteur."""
    text = "\n".join(p.read_text() for p in parts)
    assert INSTALLED in text
    unit = tmp_path / "pasteur.service"
    unit.write_text(text.replace(INSTALLED, str(PASTEUR)))
    return unit


def settings(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z]+)=(.*)", line.strip())
        if m:
            found.setdefault(m[1], []).append(m[2])
    return found


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", unit.name], cwd=unit.parent,
                          capture_output=True, text=True, timeout=60)


def exposure(unit: Path) -> str:
    out = subprocess.run([systemd_analyze(), "security", "--offline=true", unit.name],
                         cwd=unit.parent, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Overall exposure level for pasteur\.service: (\d+\.\d)", out.stdout)
    assert m, out.stdout
    return m[1]


@pytest.mark.parametrize("parts", [(UNIT,), (UNIT, HTTPS_DROPIN)], ids=["unit", "https"])
def test_unit_verifies_without_a_warning(tmp_path: Path, parts: tuple[Path, ...]) -> None:
    out = verify(local_unit(tmp_path, *parts))
    # verify exits 0 on an unknown or misspelt directive and only warns: any output fails.
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (
        out.stdout + out.stderr)


def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    unit = local_unit(tmp_path, UNIT)
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    assert "Unknown key" in verify(unit).stderr


def test_unit_keeps_its_sandbox() -> None:
    found = settings(UNIT)
    for name, value in SANDBOX.items():
        assert value in found.get(name, []), f"{name}={value} is missing from {UNIT.name}"
    assert "CAP_NET_BIND_SERVICE" not in UNIT.read_text().split("[Service]", 1)[1], (
        "the default unit binds 4343: no capability")
    dropin = settings(HTTPS_DROPIN)
    assert dropin["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert dropin["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


@pytest.mark.parametrize("parts,label,readme", [
    ((UNIT,), "pasteur.service", "rates\nits exposure {}"),
    ((UNIT, HTTPS_DROPIN), "with pasteur-https.conf", "{} with the drop-in"),
], ids=["unit", "https"])
def test_exposure_is_low_and_documented(tmp_path: Path, parts: tuple[Path, ...],
                                        label: str, readme: str) -> None:
    score = exposure(local_unit(tmp_path, *parts))
    assert float(score) <= 2.0, f"exposure {score}: the sandbox was loosened"
    rows = [line for line in DOCS.read_text().splitlines()
            if line.startswith("|") and label in line]
    assert rows, f"docs/operations.md has no exposure row for {label}"
    assert f"**{score}**" in rows[0], f"docs/operations.md gives {rows[0]!r}, measured {score}"
    assert readme.format(score) in README.read_text(), f"README: {readme.format(score)!r}"


def under_mdwe(*args: str | Path, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", MDWE_EXEC, *map(str, args)], **kwargs)


def test_mdwe_refuses_writable_executable_memory() -> None:
    """The check below can fail: under it, a W+X mapping is refused."""
    proc = under_mdwe(sys.executable, "-c", W_X, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"PermissionError" in err, err


def test_serves_and_syncs_under_memory_deny_write_execute(sshd: Sshd,  # noqa: F811
                                                         tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes leaves the server, its committer, git and the
    sync worker's libgit2 callbacks (cffi `def_extern`, compiled: no libffi
    closure) working: a paste is served and pushed over SSH with a pinned key."""
    bare = bare_remote(tmp_path / "remote.git")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = under_mdwe(
            PASTEUR, "serve", "--port", str(port), "--data", tmp_path / "data",
            "-r", sshd.url(bare), "--ssh-auth", ",".join(sshd.fingerprints.values()),
            "--sync-interval", "1", stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PASTEUR_SSH_SEED": SSH_SEED})
    try:
        wait_port(port, proc=proc, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = client.post("/", files={"paste": (None, "x = 1\n")}, data={"hl": "python"},
                            headers={"accept": "application/json"})
            assert r.status_code == 201, r.text
            code = r.json()["code"]
            assert client.get(f"/{code}").status_code == 200
            assert client.get(f"/{code}?raw=true").text == "x = 1\n"
            deadline = time.monotonic() + 30
            while code not in remote_ids(bare):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            health = client.get("/healthz")
            assert health.status_code == 200, health.text
        assert proc.poll() is None, log.read_text()
    finally:
        stop(proc, 15)
