"""The encryption formats v1 and v2 in Python, checked against the shared test vectors
(tests/test_browser.py checks the same vectors with static/crypto.js in Chromium)."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pasteur import crypto

VECTORS = json.loads((Path(__file__).parent / "vectors" / "crypto-v1.json").read_text("utf-8"))


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_vector_decrypts(vec):
    assert crypto.decrypt(vec["key"], vec["iv"], vec["ct"]) == vec["payload"]


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_vector_encrypts_to_same_ct(vec):
    key = crypto.b64url_decode(vec["key"])
    iv = crypto.b64url_decode(vec["iv"])
    assert crypto.seal(key, iv, vec["payload"]) == vec["ct"]


@pytest.mark.parametrize("vec", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_fails(vec):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"])


def test_round_trip_fresh_key_and_iv():
    payload = crypto.make_payload("print('hi')\n" * 1000, "python", True)
    key, iv, ct = crypto.encrypt(payload)
    assert len(crypto.b64url_decode(key)) == 32
    assert len(crypto.b64url_decode(iv)) == 12
    assert "=" not in key + iv + ct and "+" not in key + iv + ct and "/" not in key + iv + ct
    assert crypto.decrypt(key, iv, ct) == payload
    key2, iv2, ct2 = crypto.encrypt(payload)
    assert key2 != key and iv2 != iv and ct2 != ct


def test_ciphertext_hides_plaintext():
    key, iv, ct = crypto.encrypt(crypto.make_payload("very secret words"))
    assert b"secret" not in crypto.b64url_decode(ct)


@pytest.mark.parametrize(
    "key, iv, ct",
    [
        ("AAEC=", "ZGVmZ2hpamtsbW5v", "AAAA"),  # padding refused
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "ZGVmZ2hpamtsbW5v", "A+/"),  # not url
        ("AAECAwQF", "ZGVmZ2hpamtsbW5v", "A" * 40),  # short key
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "ZGVm", "A" * 40),  # short iv
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "ZGVmZ2hpamtsbW5v", "AAAA"),  # no tag
        ("", "", ""),
    ],
)
def test_malformed_inputs(key, iv, ct):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(key, iv, ct)


def test_wrong_version_payload_refused():
    key = bytes(32)
    iv = bytes(12)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ct = crypto.b64url_encode(AESGCM(key).encrypt(iv, b'{"v":2,"text":"x"}', None))
    with pytest.raises(crypto.DecryptError, match="v1"):
        crypto.decrypt(crypto.b64url_encode(key), crypto.b64url_encode(iv), ct)
    with pytest.raises(ValueError):
        crypto.seal(key, iv, {"v": 2, "text": "x"})


@pytest.mark.parametrize("vec", VECTORS["password"], ids=lambda v: v["name"])
def test_password_vector(vec):
    key = crypto.b64url_decode(vec["key"])
    salt = crypto.b64url_decode(vec["salt"])
    aes_key = crypto.derive_key(key, vec["password"], salt, vec["iter"])
    assert crypto.b64url_encode(aes_key) == vec["aes_key"]
    assert crypto.seal(aes_key, crypto.b64url_decode(vec["iv"]), vec["payload"]) == vec["ct"]
    args = vec["key"], vec["iv"], vec["ct"], vec["password"], vec["salt"], vec["iter"]
    assert crypto.decrypt(*args) == vec["payload"]


@pytest.mark.parametrize("vec", VECTORS["password_invalid"], ids=lambda v: v["name"])
def test_password_invalid_vector(vec):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"], vec["password"], vec["salt"], vec["iter"])


def test_password_round_trip():
    payload = crypto.make_payload("behind a password\n")
    key, iv, ct, salt, iterations = crypto.encrypt_with_password(payload, "hunter2", 1000)
    assert crypto.decrypt(key, iv, ct, "hunter2", salt, iterations) == payload
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(key, iv, ct)  # the link alone is not enough
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(key, iv, ct, "hunter3", salt, iterations)


@pytest.mark.parametrize("iterations", [crypto.MAX_KDF_ITERATIONS + 1, 10**12, 10**100])
def test_an_iteration_count_above_the_maximum_is_refused_before_any_work(iterations):
    payload = crypto.make_payload("x")
    key, iv, ct, salt, _ = crypto.encrypt_with_password(payload, "pw", 1000)
    with pytest.raises(crypto.DecryptError, match="more than the 10,000,000 allowed"):
        crypto.decrypt(key, iv, ct, "pw", salt, iterations)  # would take days, or overflow


@pytest.mark.parametrize("iterations", [0, -1, True, 1.5, "600000", None])
def test_an_iteration_count_that_is_not_a_positive_integer_is_refused(iterations):
    with pytest.raises(crypto.DecryptError, match="iteration count"):
        crypto.check_iterations(iterations)


def test_the_iteration_bounds():
    assert crypto.check_iterations(crypto.MAX_KDF_ITERATIONS) == 10_000_000
    assert crypto.check_iterations(crypto.KDF_ITERATIONS) == 600_000


# -- format v2: compressed (raw DEFLATE), then encrypted ------------------------------

VECTORS_V2 = json.loads((Path(__file__).parent / "vectors" / "crypto-v2.json").read_text("utf-8"))


@pytest.mark.parametrize("vec", VECTORS_V2["valid"], ids=lambda v: v["name"])
def test_v2_vector_decrypts(vec):
    assert crypto.decrypt(vec["key"], vec["iv"], vec["ct"], fmt=2) == vec["payload"]
    assert crypto.inflate(crypto.b64url_decode(vec["deflated"])) == crypto.encode_payload(
        vec["payload"])


@pytest.mark.parametrize("vec", VECTORS_V2["valid"], ids=lambda v: v["name"])
def test_v2_vector_is_not_v1(vec):
    with pytest.raises(crypto.DecryptError, match="not a valid v1 payload"):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"])  # fmt 1: not inflated


@pytest.mark.parametrize("vec", VECTORS_V2["valid"], ids=lambda v: v["name"])
def test_v2_seals_and_opens(vec):
    key, iv = crypto.b64url_decode(vec["key"]), crypto.b64url_decode(vec["iv"])
    ct = crypto.seal(key, iv, vec["payload"], fmt=2)
    assert crypto.decrypt(vec["key"], vec["iv"], ct, fmt=2) == vec["payload"]


@pytest.mark.parametrize("vec", VECTORS_V2["invalid"], ids=lambda v: v["name"])
def test_v2_invalid_vector_fails(vec):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"], fmt=2)


def test_v1_vectors_are_not_v2():
    vec = VECTORS["valid"][0]
    with pytest.raises(crypto.DecryptError, match="DEFLATE"):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"], fmt=2)


@pytest.mark.parametrize("fmt", [0, 3, "2", 2.0, True, None])
def test_an_unknown_format_is_refused_before_any_work(fmt):
    vec = VECTORS_V2["valid"][0]
    with pytest.raises(crypto.DecryptError, match="unknown encryption format"):
        crypto.decrypt(vec["key"], vec["iv"], vec["ct"], fmt=fmt)


def bomb(size: int) -> tuple[str, str, str]:
    """A v2 paste whose plaintext inflates to ``size`` bytes (a JSON payload of zeros)."""
    key, iv = bytes(range(32)), bytes(12)
    plain = crypto.deflate(b'{"v":1,"text":"' + b"0" * (size - 17) + b'"}')
    ct = AESGCM(key).encrypt(iv, plain, None)
    return crypto.b64url_encode(key), crypto.b64url_encode(iv), crypto.b64url_encode(ct)


def test_a_decompression_bomb_is_refused():
    key, iv, ct = bomb(crypto.MAX_INFLATED + 1)
    assert len(ct) < 120_000  # 64 MiB from ~87 KB
    with pytest.raises(crypto.DecryptError, match="inflates to more than 67,108,864 bytes"):
        crypto.decrypt(key, iv, ct, fmt=2)


def test_a_payload_of_the_limit_inflates():
    key, iv, ct = bomb(crypto.MAX_INFLATED)
    assert len(crypto.decrypt(key, iv, ct, fmt=2)["text"]) == crypto.MAX_INFLATED - 17


def test_inflate_refuses_bad_streams():
    good = crypto.deflate(b"hello" * 100)
    assert crypto.inflate(good) == b"hello" * 100
    with pytest.raises(crypto.DecryptError, match="more than 10 bytes"):
        crypto.inflate(good, limit=10)
    with pytest.raises(crypto.DecryptError, match="cut short"):
        crypto.inflate(good[:-2])
    with pytest.raises(crypto.DecryptError, match="data after its end"):
        crypto.inflate(good + b"x")
    with pytest.raises(crypto.DecryptError, match="not valid"):
        crypto.inflate(b"\xff\xff\xff")


def test_new_pastes_are_v2_and_smaller():
    payload = crypto.make_payload("print('hi')\n" * 1000, "python", True)
    sealed = crypto.new_paste(payload)
    assert sealed.fmt == 2 == crypto.FORMAT
    assert sealed.fields() == {"paste": sealed.ct, "iv": sealed.iv, "encrypted": "true",
                               "fmt": "2"}
    assert crypto.decrypt(sealed.key, sealed.iv, sealed.ct, fmt=2) == payload
    assert len(sealed.ct) < len(crypto.encrypt(payload)[2]) / 20
    tiny = crypto.new_paste(crypto.make_payload("x"))  # a tiny paste grows by a few bytes
    assert len(crypto.b64url_decode(tiny.ct)) <= len(crypto.encode_payload(
        crypto.make_payload("x"))) + 16 + 5


def test_new_password_paste_is_v2():
    payload = crypto.make_payload("behind a password\n")
    sealed = crypto.new_paste(payload, "hunter2")
    assert sealed.fmt == 2 and sealed.iter == crypto.KDF_ITERATIONS and sealed.salt
    assert sealed.fields()["salt"] == sealed.salt
    args = sealed.key, sealed.iv, sealed.ct, "hunter2", sealed.salt, sealed.iter
    assert crypto.decrypt(*args, fmt=2) == payload


def test_a_payload_over_the_inflate_limit_is_written_in_v1():
    assert crypto.format_for(b"x" * crypto.MAX_INFLATED) == 2
    assert crypto.format_for(b"x" * (crypto.MAX_INFLATED + 1)) == 1
