"""Stopping a test's child process: SIGTERM, then SIGKILL past a grace period."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
