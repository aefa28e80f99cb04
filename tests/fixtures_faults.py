"""Failing system calls in real server processes, no mocks.

A small shared library, compiled with gcc when the tests start and loaded
with ``LD_PRELOAD``, stands in front of libc's ``fsync`` and ``fdatasync``:
while a control file ``<dir>/<call>`` (or ``<dir>/<call>.once``, removed by
the call it fails) names part of the path of the descriptor's file, the call
fails with EIO and writes nothing to disk. The child processes (the
committer, git) inherit it; only the files named are affected.

    faults.fail("fdatasync", "pasteur-journal", once=True)
    server = server_factory(env=faults.env)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether this call on fd fails: a control file names part of its path. */
static int should_fail(const char *call, int fd) {
    const char *dir = getenv("FAULTS_DIR");
    if (dir == NULL) return 0;
    char link[64], path[PATH_MAX], ctl[PATH_MAX], pattern[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    for (int once = 1; once >= 0; once--) {
        snprintf(ctl, sizeof ctl, "%s/%s%s", dir, call, once ? ".once" : "");
        int c = open(ctl, O_RDONLY | O_CLOEXEC);
        if (c < 0) continue;
        ssize_t m = read(c, pattern, sizeof pattern - 1);
        close(c);
        if (m < 0) continue;
        pattern[m] = 0;
        char *nl = strchr(pattern, '\n');
        if (nl != NULL) *nl = 0;
        if (strstr(path, pattern) == NULL) continue;
        if (once && unlink(ctl) != 0) continue; /* another call took it */
        return 1;
    }
    return 0;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (should_fail("fdatasync", fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (should_fail("fsync", fd)) { errno = EIO; return -1; }
    return real(fd);
}
"""


@dataclass
class Faults:
    """The control directory of the shim; ``env`` goes to a server's environment."""

    lib: Path
    control: Path

    @property
    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.lib), "FAULTS_DIR": str(self.control)}

    def fail(self, call: str, path_part: str, once: bool = False) -> None:
        """Make ``call`` ("fsync" or "fdatasync") fail on files whose path
        holds ``path_part``: until ``clear``, or once."""
        (self.control / f"{call}{'.once' if once else ''}").write_text(path_part + "\n")

    def clear(self, call: str) -> None:
        for name in (call, f"{call}.once"):
            (self.control / name).unlink(missing_ok=True)

    def fired(self, call: str) -> bool:
        """Whether a fault set with ``once=True`` has failed its call."""
        return not (self.control / f"{call}.once").exists()


@pytest.fixture(scope="session")
def fault_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler for the fault shim (scripts/setup installs gcc)")
    out = tmp_path_factory.mktemp("faults")
    src, lib = out / "faults.c", out / "libfaults.so"
    src.write_text(SHIM)
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True, capture_output=True)
    return lib


@pytest.fixture
def faults(fault_lib: Path, tmp_path: Path) -> Iterator[Faults]:
    control = tmp_path / "faults"
    control.mkdir()
    yield Faults(fault_lib, control)
    shutil.rmtree(control, ignore_errors=True)
