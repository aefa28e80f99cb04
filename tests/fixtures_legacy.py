"""A repository as the original OCaml Pasteur (c2bf170) leaves it, built with
plain ``git`` commands, independently of this project's writer, following
``/work/shared/UPSTREAM.md`` §1:

- one blob per paste at the ROOT of the tree, named by its id, mode 100644;
- its content ``{"contents": …}`` or ``{"contents": …, "encrypted": true}``
  as OCaml's ``Json_repr.pp`` prints it (``ocaml_json``);
- one commit per paste, parent the previous head, on ``refs/heads/main``,
  author and committer ``Git KV <git-noreply@robur.coop>`` at ``+0000``,
  message ``Committed by git-kv`` with no trailing newline (so the commit is
  written with ``hash-object -t commit``: ``commit-tree -m`` would add one).

And the original page's encryption (``js/pasteur_js.ml``: AES-128-CBC, its
fixed IV, hex ciphertext, key as base64 of the exported JWK), run in
Chromium's WebCrypto (``ORIGINAL_ENCRYPT``), plus the original page's POST
(``ORIGINAL_POST``), as its script makes them.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .fixtures_git import GIT_ENV, git

AUTHOR = "Git KV <git-noreply@robur.coop>"
MESSAGE = "Committed by git-kv"
MARGIN = 78

# The original page's encryption (js/pasteur_js.ml l.6-20, 114-149), as its
# compiled script runs it in the browser: returns {hex, key}.
ORIGINAL_ENCRYPT = """
async (text) => {
  const iv = new Uint8Array([0x48, 0x3b, 0x2e, 0xc4, 0x44, 0x0d, 0x2c, 0xb0,
                             0x46, 0xf4, 0xd5, 0x76, 0xa1, 0x94, 0x26, 0x0d]);
  const key = await crypto.subtle.generateKey({ name: "AES-CBC", length: 128 }, true,
                                              ["encrypt", "decrypt"]);
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, key,
                                                        new TextEncoder().encode(text)));
  const hex = Array.from(ct, (b) => b.toString(16).padStart(2, "0")).join("");
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return { hex, key: btoa(JSON.stringify(jwk)) };
}
"""

# The original page's post (js/pasteur_js.ml `post`): FormData of its form
# (form.ml's fields, in order; unchecked boxes are not sent), the paste
# replaced by its hex ciphertext when "encrypted" is on, then
# fetch("/", {method: "POST", body}). Returns what handle_response reads,
# and the key of the link it builds.
ORIGINAL_POST = """
async ({ text, hl, ln, raw, encrypted }) => {
  const data = new FormData();
  data.set("content", "");
  data.set("paste", text);
  data.set("hl", hl);
  if (ln) data.set("ln", "on");
  if (raw) data.set("raw", "on");
  if (encrypted) data.set("encrypted", "on");
  data.set("user", "");
  data.set("comment", "");
  let key = null;
  if (encrypted) {
    const iv = new Uint8Array([0x48, 0x3b, 0x2e, 0xc4, 0x44, 0x0d, 0x2c, 0xb0,
                               0x46, 0xf4, 0xd5, 0x76, 0xa1, 0x94, 0x26, 0x0d]);
    const k = await crypto.subtle.generateKey({ name: "AES-CBC", length: 128 }, true,
                                              ["encrypt", "decrypt"]);
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, k,
                                                          new TextEncoder().encode(text)));
    data.set("paste", Array.from(ct, (b) => b.toString(16).padStart(2, "0")).join(""));
    key = btoa(JSON.stringify(await crypto.subtle.exportKey("jwk", k)));
  }
  const response = await fetch("/", { method: "POST", body: data });
  return { status: response.status, body: await response.text(), key,
           type: response.headers.get("content-type"),
           origin: response.headers.get("access-control-allow-origin") };
}
"""


def make_path(code: str, ln: bool | None, hl: str | None, raw: bool | None,
              key: str | None) -> str:
    """The original script's link (``make_path``, js/pasteur_js.ml l.57-75)."""
    args = [a for a, on in (("ln=true", ln), (f"hl={hl}", hl is not None),
                            ("raw=true", raw)) if on]
    return code + ("?" + "&".join(args) if args else "") + (f"#{key}" if key else "")


def ocaml_string(value: str) -> str:
    """``Json_repr.pp_string``: only ``"`` ``\\`` and bytes below 0x20 escaped."""
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\t": "\\t"}
    out = []
    for c in value:
        if c in named:
            out.append(named[c])
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def ocaml_json(contents: str, encrypted: bool = False) -> bytes:
    """A paste's blob as the original prints it (``Data_encoding.Json.to_string``,
    not minified: ``{ "contents": … }`` on one line when it fits in 78
    columns, else each field on its own line, a long value indented below its
    name; ``encrypted`` only when true; no trailing newline)."""
    fields = [("contents", ocaml_string(contents))]
    if encrypted:
        fields.append(("encrypted", "true"))
    flat = "{ " + ", ".join(f'"{k}": {v}' for k, v in fields) + " }"
    if len(flat) <= MARGIN:
        return flat.encode("utf-8")
    parts = []
    for k, v in fields:
        head = f'"{k}":'
        parts.append(f"{head} {v}" if len(head) + 1 + len(v) + 4 <= MARGIN
                     else f"{head}\n    {v}")
    return ("{ " + ",\n  ".join(parts) + " }").encode("utf-8")


def _git_in(repo: Path, *args: str, data: bytes | None = None) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], input=data, env=GIT_ENV,
                         check=True, capture_output=True)
    return out.stdout.decode().strip()


def commit_original(repo: Path, entries: dict[str, bytes], when: int,
                    branch: str = "main") -> str:
    """One commit as git-kv's ``change_and_push`` makes it: the previous
    head's tree plus root blobs ``entries`` (id -> document), on ``branch``."""
    ref = f"refs/heads/{branch}"
    try:
        parent: str | None = _git_in(repo, "rev-parse", "--verify", "-q", ref)
    except subprocess.CalledProcessError:
        parent = None
    lines = _git_in(repo, "ls-tree", parent).splitlines() if parent else []
    names = {line.split("\t", 1)[1]: line for line in lines}
    with tempfile.TemporaryDirectory() as tmp:  # one hash-object for all the blobs
        paths = []
        for n, document in enumerate(entries.values()):
            paths.append(Path(tmp) / str(n))
            paths[-1].write_bytes(document)
        blobs = _git_in(repo, "hash-object", "-w", "--stdin-paths",
                        data="\n".join(map(str, paths)).encode()).split()
    for name, blob in zip(entries, blobs, strict=True):
        names[name] = f"100644 blob {blob}\t{name}"
    tree = _git_in(repo, "mktree", data=("\n".join(names.values()) + "\n").encode())
    head = f"tree {tree}\n" + (f"parent {parent}\n" if parent else "")
    sig = f"{AUTHOR} {when} +0000"
    raw = f"{head}author {sig}\ncommitter {sig}\n\n{MESSAGE}".encode()
    commit = _git_in(repo, "hash-object", "-t", "commit", "-w", "--stdin", data=raw)
    _git_in(repo, "update-ref", ref, commit)
    return commit


def original_repository(path: Path, pastes: list[tuple[str, bytes]],
                        start: int = 1_700_000_000) -> Path:
    """A bare repository with one original commit per paste (id, document)."""
    git("init", "-q", "--bare", "-b", "main", path)
    git("-C", path, "config", "receive.denyCurrentBranch", "ignore")
    for n, (paste_id, document) in enumerate(pastes):
        commit_original(path, {paste_id: document}, start + 60 * n)
    return path
