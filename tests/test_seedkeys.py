"""pasteur.seedkeys against the OCaml libraries the original Pasteur used.

What is checked against what: tests/ocaml/seedkey_ref.ml, built here with ocamlfind
against Debian bookworm's x509 0.16.2 and mirage-crypto 0.10.7 (scripts/setup --test
installs them), makes the reference keys; the original (c2bf170, February 2025) linked
x509 1.0.x and mirage-crypto 1.2/2.0, whose Fortuna, Rsa.generate, Z_extra.prime and
Dsa.generate are the same code (compared in the sources; only Cstruct became string).
tests/vectors/seedkeys-v1.json keeps digests of those reference keys, so the Python side
is checked even where OCaml is not installed.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pasteur import seedkeys

HERE = Path(__file__).parent
SOURCE = HERE / "ocaml" / "seedkey_ref.ml"
VECTORS = json.loads((HERE / "vectors" / "seedkeys-v1.json").read_text())
PACKAGES = "x509,mirage-crypto-rng,mirage-crypto-pk,cstruct"


def canon(key: object) -> str:
    """A digest of the private key's numbers (PEM layouts differ: x509 leaves the public
    point out of an EC key)."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        text = f"rsa:{n.p:x}:{n.q:x}:{n.d:x}:{n.public_numbers.e:x}"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        text = f"{key.curve.name}:{key.private_numbers().private_value:x}"
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        text = f"ed25519:{raw.hex()}"
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OCaml reference program, compiled."""
    ocamlfind = shutil.which("ocamlfind")
    if ocamlfind is None:
        pytest.skip("no ocamlfind (scripts/setup --test installs ocaml-findlib, "
                    "libx509-ocaml-dev, libmirage-crypto-ocaml-dev)")
    work = tmp_path_factory.mktemp("ocaml")
    shutil.copy(SOURCE, work / SOURCE.name)
    r = subprocess.run([ocamlfind, "ocamlopt", "-package", PACKAGES, "-linkpkg", SOURCE.name,
                        "-o", "seedkey_ref"], cwd=work, capture_output=True, text=True)
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip(f"OCaml packages missing: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return work / "seedkey_ref"


def ocaml_key(program: Path, seed: str, key_type: str, bits: int) -> object:
    pem = subprocess.run([program, seed, key_type, str(bits)], capture_output=True,
                         check=True, timeout=300).stdout
    return serialization.load_pem_private_key(pem, password=None)


@pytest.mark.parametrize("case", VECTORS["keys"], ids=lambda c: f"{c['type']}-{c['bits']}-"
                         f"{c['seed'][:8]}")
def test_keys_match_the_stored_references(case: dict) -> None:
    key = seedkeys.generate(case["seed"].encode(), case["type"], case["bits"])
    assert canon(key) == case["digest"]


def test_keys_match_ocaml(reference: Path) -> None:
    """Every vector made again by OCaml here and now: Python and OCaml agree."""
    for case in VECTORS["keys"]:
        ours = seedkeys.generate(case["seed"].encode(), case["type"], case["bits"])
        theirs = ocaml_key(reference, case["seed"], case["type"], case["bits"])
        assert canon(ours) == canon(theirs) == case["digest"], case


def test_fortuna_bytes_match_ocaml(reference: Path) -> None:
    sizes = [16, 1, 0, 33, 4096, 15, 17, 70]
    out = subprocess.run([reference, "a seed", "bytes", ",".join(map(str, sizes))],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    g = seedkeys.Fortuna(b"a seed")
    assert [g.generate(n).hex() for n in sizes] == out


def test_fortuna_first_block_by_hand() -> None:
    """Reseed: key SHA-256(SHA-256(32 zero bytes || seed)), counter 1 (mirage-crypto)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(hashlib.sha256(bytes(32) + b"s").digest()).digest()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    block = enc.update((1).to_bytes(16, "big")) + enc.finalize()
    assert seedkeys.Fortuna(b"s").generate(16) == block


def test_next_prime_python_matches_gmp() -> None:
    rng = random.Random(7)
    for bits in (64, 200, 512):
        for _ in range(5):
            n = rng.getrandbits(bits) | (1 << (bits - 1))
            assert seedkeys.next_prime_py(n) == seedkeys.next_prime(n)
    assert [seedkeys.next_prime_py(n) for n in (0, 1, 2, 3, 13, 24)] == [2, 2, 3, 5, 17, 29]


def test_same_seed_same_key_and_types_differ() -> None:
    a = seedkeys.generate(b"x", "p256")
    assert canon(a) == canon(seedkeys.generate(b"x", "p256"))
    assert canon(a) != canon(seedkeys.generate(b"y", "p256"))


@pytest.mark.parametrize(("key_type", "bits", "message"), [
    ("dsa", None, "expected one of rsa, ed25519, p256, p384, p521"),
    ("rsa", 512, "512-bit RSA keys are not made here"),
    ("rsa", 20000, "from 1024 to 16384 bits"),
])
def test_bad_key_types_and_bits_are_refused(key_type: str, bits: int | None,
                                           message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seedkeys.generate(b"s", key_type, bits)


def test_bits_are_ignored_by_curves_as_in_the_original() -> None:
    assert canon(seedkeys.generate(b"s", "p384", 256)) == canon(seedkeys.generate(b"s", "p384"))


# -- the original's --ssh-seed: awa <= 0.0.4 Keys.of_seed `Rsa (RSA-2048) ---------------


@pytest.mark.parametrize("case", VECTORS["awa_of_seed"], ids=lambda c: c["seed"][:12])
def test_awa_of_seed_key_matches_the_stored_references(case: dict) -> None:
    from pasteur.sync.sshkeys import AWA_SEED_BITS

    assert canon(seedkeys.generate(case["seed"].encode(), "rsa", AWA_SEED_BITS)) == \
        case["digest"]


def test_awa_of_seed_key_matches_ocaml(reference: Path) -> None:
    """awa 0.0.1-0.0.4's ``Keys.of_seed `Rsa`` code (Fortuna seeded with the seed,
    ``Rsa.generate ~g ~bits:2048``) run in OCaml, and the key --ssh-seed uses here."""
    from pasteur.sync.sshkeys import key_from_awa_seed

    for case in VECTORS["awa_of_seed"]:
        pem = subprocess.run([reference, case["seed"], "awa-of-seed"], capture_output=True,
                             check=True, timeout=300).stdout
        theirs = serialization.load_pem_private_key(pem, password=None)
        assert canon(theirs) == case["digest"], case
        ours = serialization.load_ssh_private_key(
            key_from_awa_seed(case["seed"]).private_pem.encode(), password=None)
        assert canon(ours) == case["digest"], case
