"""contrib/pasteur.service: `systemd-analyze verify` accepts it, it keeps its
sandbox, and its `systemd-analyze security` exposure is the one docs/operations.md gives.

`verify` needs ExecStart's binary to exist, so each check runs on a copy whose
ExecStart points at this interpreter's `pasteur`. `security --offline=true`
(systemd 250 and later; Debian 12 has 252) scores a unit file without a running
systemd. Neither starts the service: no systemd runs here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "pasteur.service"
HTTPS_DROPIN = ROOT / "contrib" / "pasteur-https.conf"
DOCS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
INSTALLED = "/opt/pasteur/bin/pasteur"  # where docs/operations.md installs the wheel
PASTEUR = Path(sys.executable).with_name("pasteur")

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
