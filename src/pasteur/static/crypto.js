// Pasteur encryption formats v1 and v2 (the same as pasteur/crypto.py); v1:
// AES-256-GCM, 32-byte random key carried in the URL fragment, 12-byte random
// iv, no additional data, 128-bit tag appended; plaintext is the UTF-8 JSON
// payload {"v":1,"text":…,"lang":…,"ln":…}, plus, for a paste with attached
// files, "files":[{"name":…,"type":…,"data":base64url bytes},…] (encrypted
// with the text; readers ignore keys they do not know); key, iv and
// ciphertext travel as base64url without padding. No dependencies; the key
// never leaves the page.
//
// With a password, the AES key is not the link's key itself but
// PBKDF2-HMAC-SHA256(linkKey ‖ UTF-8(password), salt, iter) (32 bytes): the
// salt (16 random bytes, base64url) and iter are stored in clear by the server;
// both the full link and the password are needed to read the paste. iter is
// KDF_ITERATIONS here; a reader refuses more than MAX_KDF_ITERATIONS, as the
// server refuses to store more: the count comes from the paste, and a hostile
// one could ask for hours of work (both numbers: pasteur/crypto.py, and a test
// checks they agree).
//
// Format v2 is v1 with the payload's bytes compressed (raw DEFLATE, RFC 1951,
// CompressionStream("deflate-raw")) before AES-256-GCM; the stored document
// says so ("fmt": 2), and a reader inflates after decrypting, at most
// MAX_INFLATED bytes (a decompression bomb is refused). New pastes are v2 but
// where this browser has no CompressionStream, or the payload is over
// MAX_INFLATED: then v1. Why (ciphertext does not compress, a v2 page weighs
// about a third): pasteur/crypto.py.

export const VERSION = 1; // of the payload, in either format
export const FORMAT = 2; // new pastes' (the stored document's "fmt")
export const MAX_INFLATED = 64 * 1024 * 1024;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KDF = "pbkdf2-sha256";
export const KDF_ITERATIONS = 600000;
export const MAX_KDF_ITERATIONS = 10000000;
const SALT_BYTES = 16;

// Why decryption failed: "key" (malformed key), "data" (malformed iv or
// ciphertext), "kdf" (an iteration count above MAX_KDF_ITERATIONS), "auth"
// (wrong key or altered paste), "payload" (bad content), "format" (an
// unknown fmt), "nozip" (v2, and no DecompressionStream here), "bomb" (v2
// inflating to more than MAX_INFLATED).
export class DecryptError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "DecryptError";
    this.kind = kind;
  }
}

// WebCrypto exists only in secure contexts (https, or http on localhost).
export function available() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle);
}

export function b64urlEncode(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function b64urlDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new TypeError("not base64url without padding");
  }
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// files: [{name, type, data}] with data already base64url (see fileEntry).
export function makePayload(text, lang = "", ln = false, files = []) {
  const payload = { v: VERSION, text, lang, ln: Boolean(ln) };
  if (files.length) payload.files = files;
  return payload;
}

// A File (or Blob with a name) as a payload attachment.
export async function fileEntry(file) {
  return { name: file.name, type: file.type || "", data: b64urlEncode(new Uint8Array(await file.arrayBuffer())) };
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function checkFile(f) {
  return f !== null && typeof f === "object" && typeof f.name === "string" &&
    (!("type" in f) || typeof f.type === "string") &&
    typeof f.data === "string" && B64URL.test(f.data) && f.data.length % 4 !== 1;
}

function checkPayload(p) {
  if (p === null || typeof p !== "object" || Array.isArray(p)) throw new TypeError("the payload must be an object");
  if (p.v !== VERSION) throw new TypeError(`unsupported payload version ${p.v}`);
  if (typeof p.text !== "string") throw new TypeError("the payload text must be a string");
  if ("lang" in p && typeof p.lang !== "string") throw new TypeError("the payload lang must be a string");
  if ("ln" in p && typeof p.ln !== "boolean") throw new TypeError("the payload ln must be a boolean");
  if ("files" in p && !(Array.isArray(p.files) && p.files.every(checkFile))) {
    throw new TypeError("each attached file needs a name, a type and base64url data");
  }
}

function importKey(raw, usage) {
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, [usage]);
}

// The iteration count of a paste being read, or a DecryptError.
export function checkIterations(iter) {
  if (!Number.isInteger(iter) || iter < 1) throw new DecryptError("data", "bad iteration count");
  if (iter > MAX_KDF_ITERATIONS) {
    throw new DecryptError("kdf", `${iter} PBKDF2 iterations, more than the ${MAX_KDF_ITERATIONS} allowed`);
  }
  return iter;
}

// The AES key of a password paste: PBKDF2-HMAC-SHA256(linkKey ‖ password).
export async function deriveKey(linkKey, password, salt, iterations) {
  const pw = new TextEncoder().encode(password);
  const material = new Uint8Array(linkKey.length + pw.length);
  material.set(linkKey);
  material.set(pw, linkKey.length);
  const base = await crypto.subtle.importKey("raw", material, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations }, base, 256);
  return new Uint8Array(bits);
}

// Whether this browser can write (and read) format v2.
export function compression() {
  try {
    new CompressionStream("deflate-raw");
    new DecompressionStream("deflate-raw");
    return true;
  } catch {
    return false;
  }
}

// Raw DEFLATE of bytes (Uint8Array), as pasteur/crypto.py's deflate.
export async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// Raw DEFLATE back to bytes, at most `limit` of them: more (a decompression
// bomb), a cut or trailing data reject with a DecryptError.
export async function inflate(bytes, limit = MAX_INFLATED) {
  if (!compression()) throw new DecryptError("nozip", "this browser cannot decompress (no DecompressionStream)");
  const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw")).getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      throw new DecryptError("payload", "the decrypted paste is not valid v2 (DEFLATE) data");
    }
    if (chunk.done) break;
    size += chunk.value.length;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw new DecryptError("bomb", `the paste inflates to more than ${limit} bytes: refused`);
    }
    chunks.push(chunk.value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// The format of a stored paste ("fmt", 1 when absent), or a DecryptError.
export function checkFormat(fmt) {
  if (fmt !== 1 && fmt !== 2) throw new DecryptError("format", `unknown encryption format ${fmt}`);
  return fmt;
}

// The format a new paste is written in.
export function formatFor(plain) {
  return compression() && plain.length <= MAX_INFLATED ? FORMAT : 1;
}

function packed(payload) {
  checkPayload(payload);
  return new TextEncoder().encode(JSON.stringify(payload));
}

async function sealBytes(key, iv, plain, fmt) {
  if (key.length !== KEY_BYTES || iv.length !== IV_BYTES) throw new TypeError("key must be 32 bytes, iv 12");
  const data = checkFormat(fmt) === 2 ? await deflate(plain) : plain;
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await importKey(key, "encrypt"), data);
  return b64urlEncode(new Uint8Array(ct));
}

// Deterministic encryption with a given key and iv (Uint8Arrays): returns ct.
export async function seal(key, iv, payload, fmt = 1) {
  return sealBytes(key, iv, packed(payload), fmt);
}

// Encrypts with a fresh key and iv, in format v2 where it can (formatFor):
// resolves to {key, iv, ct, fmt}, key, iv and ct base64url, plus {salt, iter}
// when a password is given.
export async function encrypt(payload, password = "") {
  const plain = packed(payload);
  const fmt = formatFor(plain);
  const key = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  if (!password) return { key: b64urlEncode(key), iv: b64urlEncode(iv), ct: await sealBytes(key, iv, plain, fmt), fmt };
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const aesKey = await deriveKey(key, password, salt, KDF_ITERATIONS);
  const ct = await sealBytes(aesKey, iv, plain, fmt);
  return { key: b64urlEncode(key), iv: b64urlEncode(iv), ct, fmt, salt: b64urlEncode(salt), iter: KDF_ITERATIONS };
}

// Decrypts and checks a payload; rejects with a DecryptError. A password
// paste needs kdf = {password, salt, iter}; a v2 one fmt = 2.
export async function decrypt(keyText, ivText, ctText, kdf = null, fmt = 1) {
  checkFormat(fmt);
  let key, iv, ct;
  try {
    key = b64urlDecode(keyText);
  } catch {
    throw new DecryptError("key", "the key is not valid base64url");
  }
  if (key.length !== KEY_BYTES) throw new DecryptError("key", "the key must be 32 bytes");
  try {
    iv = b64urlDecode(ivText);
    ct = b64urlDecode(ctText);
  } catch {
    throw new DecryptError("data", "the stored iv or ciphertext is malformed");
  }
  if (iv.length !== IV_BYTES || ct.length < TAG_BYTES) {
    throw new DecryptError("data", "the stored iv or ciphertext is malformed");
  }
  if (kdf) {
    let salt;
    try {
      salt = b64urlDecode(kdf.salt);
    } catch {
      throw new DecryptError("data", "the stored password salt is malformed");
    }
    key = await deriveKey(key, kdf.password, salt, checkIterations(kdf.iter));
  }
  let plain;
  try {
    plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv }, await importKey(key, "decrypt"), ct);
  } catch {
    throw new DecryptError("auth", "wrong key, or the paste was altered");
  }
  if (fmt === 2) plain = await inflate(new Uint8Array(plain));
  try {
    const payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
    checkPayload(payload);
    return payload;
  } catch {
    throw new DecryptError("payload", `not a valid v${VERSION} payload`);
  }
}
