// The original OCaml Pasteur's encryption, to read its links (never to
// encrypt: new pastes use formats v1 and v2, crypto.js). Its page (js/pasteur_js.ml
// at c2bf170) encrypted with AES-128-CBC under a FIXED IV, stored the
// ciphertext as hex and put the key in the URL fragment as base64 (padded)
// of the JWK JSON that WebCrypto exports. The same as pasteur/crypto.py's
// decrypt_legacy. Weak: a fixed IV shows which pastes under one key start
// alike, and CBC without authentication lets an altered paste decrypt.
import { DecryptError } from "./crypto.js";

export const LEGACY_ENC = "aes-128-cbc";
const IV = new Uint8Array([
  0x48, 0x3b, 0x2e, 0xc4, 0x44, 0x0d, 0x2c, 0xb0, 0x46, 0xf4, 0xd5, 0x76, 0xa1, 0x94, 0x26, 0x0d,
]);

// The JWK of an original link's fragment, or null if it has another shape
// (a v1 key is base64url of 32 bytes, not of a JSON object).
export function legacyJwk(fragment) {
  let text = fragment;
  try {
    if (text.includes("%")) text = decodeURIComponent(text);
    const jwk = JSON.parse(atob(text));
    if (jwk && typeof jwk === "object" && jwk.kty === "oct" && typeof jwk.k === "string") return jwk;
  } catch {
    // not base64 of JSON: another shape
  }
  return null;
}

function ofHex(hex) {
  if (!/^(?:[0-9A-Fa-f]{2})*$/.test(hex)) throw new DecryptError("data", "the stored ciphertext is not hex");
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(2 * i, 2), 16);
  return bytes;
}

// The text of an original paste: hex ciphertext, key from the fragment.
export async function decryptLegacy(fragment, hex) {
  const jwk = legacyJwk(fragment);
  if (!jwk) throw new DecryptError("key", "the link's key is not the original Pasteur's");
  const ct = ofHex(hex);
  let key;
  try {
    key = await crypto.subtle.importKey("jwk", jwk, { name: "AES-CBC" }, false, ["decrypt"]);
  } catch {
    throw new DecryptError("key", "the link's key cannot be imported");
  }
  let plain;
  try {
    plain = await crypto.subtle.decrypt({ name: "AES-CBC", iv: IV }, key, ct);
  } catch {
    throw new DecryptError("auth", "wrong key, or the paste was altered");
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    throw new DecryptError("auth", "wrong key: the result is not UTF-8 text");
  }
}
