"""Deterministic SSH keys from a seed, and OpenSSH fingerprints.

``pasteur keygen`` prints a random seed and the public key derived from it;
``--ssh-seed`` derives the same private key again, in memory only. The key is
Ed25519: its 32-byte private scalar seed is SHA-256 of a domain label and the
seed text, so any seed string works and the same seed always gives the same key.

The original's ``--ssh-key`` is taken too: ``ed25519:<base64 of the 32-byte private
key>`` as is, and ``rsa:<seed>`` as awa's ``Keys.of_string`` made it: the 4096-bit RSA
key ``X509.Private_key.generate ~seed`` draws from a Fortuna generator seeded with the
seed (re-derived bit for bit by `pasteur.seedkeys`). ``pasteur keygen --ssh-key KEY``
prints its public key, to compare with the remote's deploy key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
import socket
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

_LABEL = b"pasteur ssh ed25519 v1\0"


@dataclass(frozen=True)
class SshKey:
    public: str  # "ssh-ed25519 AAAA... comment"
    private_pem: str  # OpenSSH private key format, unencrypted (memory only)


def new_seed() -> str:
    """A fresh random seed (32 bytes, base64 like the original's ``awa_gen_key``)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def key_from_seed(seed: str, comment: str | None = None) -> SshKey:
    if not seed:
        raise ValueError("the SSH seed is empty")
    scalar = hashlib.sha256(_LABEL + seed.encode("utf-8")).digest()
    return _ssh_key(Ed25519PrivateKey.from_private_bytes(scalar), comment)


def _ssh_key(key: Ed25519PrivateKey | RSAPrivateKey, comment: str | None) -> SshKey:
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    comment = comment if comment is not None else f"pasteur@{socket.gethostname()}"
    return SshKey(f"{public} {comment}".strip(), private)


def key_from_ed25519(b64: str, comment: str | None = None) -> SshKey:
    """The key of the original's ``--ssh-key ed25519:<base64>``: the base64 of the
    32-byte Ed25519 private key (awa's ``Keys.of_string``), taken as is."""
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except ValueError:
        raise ValueError("the ed25519 key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an ed25519 private key has 32 bytes, this one has {len(raw)}")
    return _ssh_key(Ed25519PrivateKey.from_private_bytes(raw), comment)


@functools.lru_cache(maxsize=4)
def key_from_rsa_seed(seed: str, comment: str | None = None) -> SshKey:
    """The key of the original's ``--ssh-key rsa:<seed>``: awa's ``Keys.of_string`` gives
    the seed's bytes to ``X509.Private_key.generate ~seed `RSA`` (4096 bits). A few
    seconds of work, hence cached."""
    from pasteur import seedkeys

    key = seedkeys.generate(os.fsencode(seed), "rsa", seedkeys.DEFAULT_BITS)
    assert isinstance(key, RSAPrivateKey)
    return _ssh_key(key, comment)


def key_from_spec(spec: str, comment: str | None = None) -> SshKey:
    """The key of an ``--ssh-key`` value (``ed25519:<base64>`` or ``rsa:<seed>``), as
    `pasteur.sync.flags.parse_ssh_key` checked it."""
    kind, _, rest = spec.partition(":")
    if kind == "rsa":
        return key_from_rsa_seed(rest, comment)
    return key_from_ed25519(rest, comment)


def fingerprint(key_blob: bytes) -> str:
    """``SHA256:...`` of a raw public key blob, as ``ssh-keygen -l -E sha256`` prints it."""
    return fingerprint_of_hash(hashlib.sha256(key_blob).digest())


def fingerprint_of_hash(digest: bytes) -> str:
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_fingerprint(value: str) -> bytes:
    """The 32-byte digest of a ``SHA256:<base64>`` fingerprint (ValueError if malformed)."""
    value = value.strip()
    prefix, sep, b64 = value.partition(":")
    if not sep or prefix.upper() != "SHA256":
        raise ValueError(
            f"expected SHA256:<base64> as printed by ssh-keygen -l -E sha256, got {value!r}"
        )
    try:
        digest = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except ValueError:
        raise ValueError(f"bad base64 in fingerprint {value!r}") from None
    if len(digest) != 32:
        raise ValueError(f"a SHA256 fingerprint has 32 bytes, {value!r} has {len(digest)}")
    return digest


def parse_fingerprints(value: str) -> list[bytes]:
    """One or more fingerprints, separated by commas or spaces (a host has one key per type)."""
    items = [v for v in value.replace(",", " ").split() if v]
    if not items:
        raise ValueError("no fingerprint given")
    return [parse_fingerprint(v) for v in items]
