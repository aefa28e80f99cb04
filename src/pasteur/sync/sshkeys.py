"""SSH keys of the command line, and OpenSSH fingerprints.

The original Pasteur's keys, re-derived bit for bit by `pasteur.seedkeys`:

* ``--ssh-seed SEED`` (the original's flag from September 2020 to March 2022, and the
  seeds' README's): git-mirage's ``with_rsa_key`` gave the seed to awa's
  ``Keys.of_seed `Rsa SEED``, which until awa 0.0.4 (every awa release before December
  2021) seeded a Fortuna generator with the seed's bytes and drew a **2048-bit** RSA key
  (``Mirage_crypto_pk.Rsa.generate ~g ~bits:2048``) — the key ``awa_gen_key`` printed
  with its ``seed is …`` line. awa 0.0.5 and later made the 4096-bit key of
  ``--ssh-key rsa:SEED`` from the same seed instead.
* ``--ssh-key rsa:SEED`` (awa >= 0.0.5 ``Keys.of_string``): the 4096-bit RSA key
  ``X509.Private_key.generate ~seed`` draws from the same kind of generator.
* ``--ssh-key ed25519:BASE64``: the base64 (padded, as ocaml-base64 decodes it) of the
  32-byte Ed25519 private key, taken as is (``X509.Private_key.of_string `ED25519``).

``pasteur keygen`` makes a new Ed25519 key and prints it as ``--ssh-key ed25519:…``.
Seeds printed by ``pasteur keygen`` before it did (this project's own Ed25519 derivation,
SHA-256 of a label and the seed) are converted by ``pasteur keygen --pasteur-seed SEED``
to the ``--ssh-key ed25519:…`` of the same key.
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
AWA_SEED_BITS = 2048  # awa <= 0.0.4 Keys.of_seed `Rsa: Rsa.generate ~g ~bits:2048


@dataclass(frozen=True)
class SshKey:
    public: str  # "ssh-ed25519 AAAA... comment"
    private_pem: str  # OpenSSH private key format, unencrypted (memory only)


def new_ed25519() -> str:
    """A fresh Ed25519 key as an ``--ssh-key`` value: ``ed25519:<base64 of 32 bytes>``."""
    return "ed25519:" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def pasteur_seed_to_spec(seed: str) -> str:
    """The ``--ssh-key ed25519:…`` of the key an earlier ``pasteur keygen`` seed gave
    (this project's own derivation, before ``--ssh-seed`` took the original's meaning)."""
    if not seed:
        raise ValueError("the seed is empty")
    scalar = hashlib.sha256(_LABEL + seed.encode("utf-8")).digest()
    return "ed25519:" + base64.b64encode(scalar).decode("ascii")


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


@functools.lru_cache(maxsize=8)
def key_from_rsa_seed(seed: str, comment: str | None = None,
                      bits: int = 4096) -> SshKey:
    """The RSA key awa made from a seed: ``bits`` 4096 for the original's ``--ssh-key
    rsa:<seed>`` (awa >= 0.0.5 ``Keys.of_string`` → ``X509.Private_key.generate ~seed
    `RSA``), 2048 for its ``--ssh-seed`` (awa <= 0.0.4 ``Keys.of_seed `Rsa``). The seed's
    bytes as given on the command line feed the generator. A few seconds of work for
    4096 bits, hence cached."""
    from pasteur import seedkeys

    key = seedkeys.generate(os.fsencode(seed), "rsa", bits)
    assert isinstance(key, RSAPrivateKey)
    return _ssh_key(key, comment)


def key_from_awa_seed(seed: str, comment: str | None = None) -> SshKey:
    """The key of the original's ``--ssh-seed SEED``: RSA-2048 (see the module doc)."""
    return key_from_rsa_seed(seed, comment, AWA_SEED_BITS)


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
