"""The original Pasteur's keys from a seed, re-derived bit for bit.

The original (c2bf170) turned every seed into a key the same way:
``X509.Private_key.generate ~seed ~bits typ`` (ocaml-x509 ``lib/private_key.ml``), used by
letsencrypt-mirage for ``--account-seed``/``--certificate-seed`` (``mirage/lE.ml``
``gen_key``) and by awa's ``Keys.of_string`` for ``--ssh-key rsa:<seed>`` (RSA, 4096 bits).
That function seeds a fresh Fortuna generator with the seed string
(``Mirage_crypto_rng.create ~seed (module Fortuna)``) and draws the key from it with
mirage-crypto's own key generation. This module reproduces each step, as mirage-crypto
writes it (rng/fortuna.ml, rng/rng.ml, pk/z_extra.ml, pk/rsa.ml, ec/mirage_crypto_ec.ml;
the same algorithm in 0.10.7, 1.2.0 and 2.0.0):

* Fortuna: key = SHA-256(SHA-256(32 zero bytes || seed)), counter = 1 (a 128-bit
  big-endian AES counter block). Each request of ``n`` bytes runs AES-256-CTR for
  ``ceil(n/16) + 2`` blocks from the counter, returns the first ``n`` bytes, takes the
  last 32 bytes as the next key and advances the counter by the number of blocks.
  Requests above 65536 bytes are served in 65536-byte chunks (never the case here).
* RSA (``Rsa.generate ~e:65537 ~bits``): a prime of ``bits - bits/2`` bits, then one
  of ``bits/2`` bits (the code reads ``(prime pb, prime qb)``, and OCaml evaluates a
  tuple from right to left), each ``Z_extra.prime ~msb:2``: draw ``ceil(b/8)`` bytes, set
  the 2 top bits, keep the top ``b`` bits, take the next prime above (GMP's
  ``nextprime``), start again if that overflows ``b`` bits. The key uses ``max`` and
  ``min`` of the two as p and q; if they are equal or ``e`` divides ``p-1`` or ``q-1``
  everything is drawn again from the same generator. ``d = e^-1 mod lcm(p-1, q-1)``.
* P-256/P-384/P-521 (``Dsa.generate``): draw 32/48/66 bytes, big-endian; start again
  unless ``0 < x < n``.
* Ed25519 (``Ed25519.generate``): the first 32 bytes drawn are the private key.

tests/test_seedkeys.py checks all of this against keys made by a small OCaml program
(tests/ocaml/seedkey_ref.ml) built with Debian's x509 and mirage-crypto.
"""

from __future__ import annotations

import hashlib
import math

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:
    from gmpy2 import next_prime as _gmp_next_prime
except ImportError:  # pragma: no cover - a dependency; the Python primes still work
    _gmp_next_prime = None

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

KEY_TYPES = ("rsa", "ed25519", "p256", "p384", "p521")  # X509.Key_type.strings
DEFAULT_BITS = 4096  # X509.Private_key.generate's ?(bits = 4096)
RSA_E = 65537
# mirage-crypto accepts RSA from 89 bits; OpenSSL (which signs here) wants 1024 and more.
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 16384

_P384_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
               "581A0DB248B0A77AECEC196ACCC52973", 16)
_P521_N = int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA"
              "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16)
# key type -> (curve, scalar bytes drawn, group order)
_CURVES: dict[str, tuple[ec.EllipticCurve, int, int]] = {
    "p256": (ec.SECP256R1(), 32,
             0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    "p384": (ec.SECP384R1(), 48, _P384_N),
    "p521": (ec.SECP521R1(), 66, _P521_N),
}


class Fortuna:
    """mirage-crypto's Fortuna generator after ``create ~seed``, without entropy pools
    (a seeded generator made for one key never gets any)."""

    BLOCK = 16
    CHUNK = 0x10000

    def __init__(self, seed: bytes) -> None:
        inner = hashlib.sha256(bytes(32) + seed).digest()
        self._key = hashlib.sha256(inner).digest()
        self._ctr = 1

    def generate(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += self._rekey(min(n - len(out), self.CHUNK))
        return bytes(out)

    def _rekey(self, n: int) -> bytes:
        blocks = -(-n // self.BLOCK) + 2
        size = blocks * self.BLOCK
        iv = (self._ctr % (1 << 128)).to_bytes(16, "big")
        enc = Cipher(algorithms.AES(self._key), modes.CTR(iv)).encryptor()
        stream = enc.update(bytes(size)) + enc.finalize()
        self._key = stream[size - 32:]
        self._ctr += blocks
        return stream[:n]


# --- primes (Z_extra.prime with GMP's nextprime) -------------------------------------

_SMALL = [p for p in range(3, 20000, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))]
_WINDOW = 8192  # odd candidates sieved at once


def _strong_probable_prime(n: int, base: int) -> bool:
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    x = pow(base, d, n)
    if x in (1, n - 1):
        return True
    for _ in range(s - 1):
        x = x * x % n
        if x == n - 1:
            return True
    return False


def is_probable_prime(n: int) -> bool:
    """Miller-Rabin with the first 12 primes as bases (deterministic below 3.3e24, and a
    composite passing them all by chance is out of reach at key sizes)."""
    if n < 2:
        return False
    for p in (2, *_SMALL[:40]):
        if n % p == 0:
            return n == p
    return all(_strong_probable_prime(n, b) for b in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31,
                                                         37))


def next_prime(n: int) -> int:
    """The smallest prime strictly above ``n``: GMP's own ``mpz_nextprime`` (what zarith's
    ``Z.nextprime`` calls) through gmpy2, else `next_prime_py`."""
    if _gmp_next_prime is not None:
        return int(_gmp_next_prime(n))
    return next_prime_py(n)


def next_prime_py(n: int) -> int:
    """`next_prime` in Python (about 6 times slower for RSA-4096 primes)."""
    if n < 2:
        return 2
    start = n + 1 if n % 2 == 0 else n + 2  # first odd candidate above n
    while True:
        sieve = bytearray(b"\1") * _WINDOW  # sieve[i] stands for start + 2*i
        for p in _SMALL:
            if p >= start:
                break
            # first i with start + 2i = 0 (mod p): i = -start * inverse(2) mod p
            i = (-start * ((p + 1) // 2)) % p
            sieve[i::p] = bytes(len(range(i, _WINDOW, p)))
        for i in range(_WINDOW):
            if sieve[i]:
                c = start + 2 * i
                if _strong_probable_prime(c, 2) and is_probable_prime(c):
                    return c
        start += 2 * _WINDOW


def _gen_bits(g: Fortuna, bits: int, msb: int) -> int:
    """Z_extra.gen_bits: ceil(bits/8) bytes, the top ``msb`` bits set, the top ``bits``
    bits kept."""
    nbytes = -(-bits // 8)
    x = int.from_bytes(g.generate(nbytes), "big")
    total = nbytes * 8
    x |= ((1 << msb) - 1) << (total - msb)
    return x >> (total - bits)


def _prime(g: Fortuna, bits: int, msb: int = 2) -> int:
    while True:
        p = next_prime(_gen_bits(g, bits, msb))
        if p < 1 << bits:
            return p


# --- keys ----------------------------------------------------------------------------


def rsa_key(g: Fortuna, bits: int, e: int = RSA_E) -> rsa.RSAPrivateKey:
    """Mirage_crypto_pk.Rsa.generate ~g ~e ~bits."""
    while True:
        pb, qb = bits // 2, bits - bits // 2
        # ``(prime pb, prime qb)``: OCaml evaluates a tuple right to left, q comes first
        b = _prime(g, qb)
        a = _prime(g, pb)
        p, q = max(a, b), min(a, b)
        if p != q and math.gcd(e, p - 1) == 1 and math.gcd(e, q - 1) == 1:
            break
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    d = pow(e, -1, lcm)
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=d % (p - 1), dmq1=d % (q - 1), iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e=e, n=p * q))
    return numbers.private_key()


def curve(key_type: str) -> ec.EllipticCurve:
    """The curve of ``p256``, ``p384`` or ``p521``."""
    return _CURVES[key_type][0]


def ec_key(g: Fortuna, key_type: str) -> ec.EllipticCurvePrivateKey:
    """Mirage_crypto_ec.P256/P384/P521.Dsa.generate ~g."""
    curve, size, order = _CURVES[key_type]
    while True:
        x = int.from_bytes(g.generate(size), "big")
        if 0 < x < order:
            return ec.derive_private_key(x, curve)


def check(key_type: str, bits: int | None) -> str:
    """The key type, lowercased, if ``generate`` can make it with these bits; ValueError
    with the reason otherwise."""
    low = key_type.lower()
    if low not in KEY_TYPES:
        raise ValueError(f"expected one of {', '.join(KEY_TYPES)}, got {key_type!r}")
    if low == "rsa" and bits is not None and not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise ValueError(f"{bits}-bit RSA keys are not made here (from {MIN_RSA_BITS} to "
                         f"{MAX_RSA_BITS} bits)")
    return low


def generate(seed: bytes, key_type: str, bits: int | None = None) -> PrivateKey:
    """``X509.Private_key.generate ~seed ~bits typ``: the same key for the same
    arguments as the original. ``bits`` (default 4096) only matters for RSA."""
    low = check(key_type, bits)
    g = Fortuna(seed)
    if low == "rsa":
        return rsa_key(g, DEFAULT_BITS if bits is None else bits)
    if low == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(g.generate(32))
    return ec_key(g, low)
