// The paste form: encrypts in the browser when "encrypted" is checked, shows
// the size against the limit. Without JavaScript the form still posts
// unencrypted pastes the ordinary way.
import { formatBytes } from "./bytes.js";
import { available, encrypt, fileEntry, makePayload } from "./crypto.js";

const form = document.getElementById("paste-form");
const textarea = form.elements.paste;
const status = document.getElementById("form-status");
const sizeOut = document.getElementById("paste-size");
const submit = form.querySelector("button[type=submit]");
const maxSize = () => Number(form.dataset.maxSize) || Infinity;
const passwordInput = document.getElementById("paste-password");
const attach = document.getElementById("attach");
const filesInput = document.getElementById("paste-files");
const encoder = new TextEncoder();

const NO_CRYPTO =
  "Encryption is not available: this browser only allows it on secure pages " +
  "(https, or http on localhost), and this page came over plain http. " +
  "Open the site over https, or uncheck “encrypted” to paste in clear.";
const PASSWORD_CLEAR =
  "A password protects encrypted pastes only: check “encrypted”, or clear the password.";
const FILES_CLEAR =
  "Attached files are sent encrypted only: check “encrypted”, or remove the files.";
const RAW_ENCRYPTED =
  "“raw” and “encrypted” cannot go together: the raw view is served as text " +
  "by the server, which cannot decrypt the paste. Uncheck one of them.";

function say(message) {
  status.textContent = message;
  status.hidden = !message;
}

const attached = () => (form.elements.encrypted.checked ? [...filesInput.files] : []);

// The text's size, plus the attached files as they travel in the payload
// (base64url: 4 characters for 3 bytes).
function showSize() {
  const files = attached();
  const n = encoder.encode(textarea.value).length +
    files.reduce((sum, f) => sum + Math.ceil((f.size * 4) / 3), 0);
  const what = files.length ? ` (with ${files.length} file${files.length > 1 ? "s" : ""})` : "";
  sizeOut.textContent = `${formatBytes(n)}${what} of ${form.dataset.maxSizeText || formatBytes(maxSize())}`;
  sizeOut.classList.toggle("over", n > maxSize());
  return n;
}

function tooBig() {
  const what = attached().length ? "The text and its attached files are" : "The paste is";
  return `${what} too large: ${formatBytes(showSize())}, the limit is ${form.dataset.maxSizeText}.`;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not JSON: fall through
  }
  return `The server refused the paste (HTTP ${response.status}).`;
}

async function sendEncrypted() {
  const fields = form.elements;
  const files = await Promise.all(attached().map(fileEntry));
  const payload = makePayload(textarea.value, fields.hl.value, fields.ln.checked, files);
  const packed = encoder.encode(JSON.stringify(payload)).length;
  if (packed > maxSize()) {
    say(`${tooBig()} Packed for encryption (with its options), it takes ${formatBytes(packed)}.`);
    return;
  }
  const { key, iv, ct, fmt, salt, iter } = await encrypt(payload, passwordInput.value);
  const data = new FormData();
  data.set("paste", ct);
  data.set("iv", iv);
  data.set("encrypted", "true");
  data.set("fmt", String(fmt)); // 2: compressed before encryption (crypto.js)
  if (salt) {
    data.set("salt", salt);
    data.set("iter", String(iter));
  }
  if (fields.expiry) data.set("expiry", fields.expiry.value);
  if (fields.burn && fields.burn.checked) data.set("burn", "true");
  for (const name of ["user", "comment"]) {
    const value = fields[name].value.trim();
    if (value) data.set(name, value);
  }
  let response;
  try {
    response = await fetch(form.action, {
      method: "POST",
      body: data,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    say("The server could not be reached; your text is still here, try again.");
    return;
  }
  if (!response.ok) {
    say(await errorMessage(response));
    return;
  }
  const { code } = await response.json();
  const target = new URL(encodeURIComponent(code), form.action);
  target.hash = key;
  location.assign(target.href);
}

form.addEventListener("submit", async (event) => {
  say("");
  if (showSize() > maxSize()) {
    event.preventDefault();
    say(tooBig());
    return;
  }
  if (!form.elements.encrypted.checked) {
    if (passwordInput.value || filesInput.files.length) {
      event.preventDefault();
      say(passwordInput.value ? PASSWORD_CLEAR : FILES_CLEAR);
    }
    return; // the ordinary form post
  }
  event.preventDefault();
  if (form.elements.raw.checked) return say(RAW_ENCRYPTED);
  if (!available()) return say(NO_CRYPTO);
  submit.disabled = true;
  try {
    await sendEncrypted();
  } catch (error) {
    say(`Encryption failed: ${error.message}`);
  } finally {
    submit.disabled = false;
  }
});

// Files go with encrypted pastes only; with files the text may be empty.
// The encryption note shows while "encrypted" is checked.
function updateAttach() {
  const encrypted = form.elements.encrypted.checked;
  cryptoNote.hidden = !encrypted;
  attach.hidden = !encrypted || !available();
  textarea.required = !(encrypted && filesInput.files.length);
  showSize();
}

textarea.addEventListener("input", showSize);
form.elements.encrypted.addEventListener("change", updateAttach);
filesInput.addEventListener("change", updateAttach);
textarea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
const cryptoNote = document.getElementById("crypto-note");
// Encrypted by default where the browser can encrypt: the page leaves it
// unchecked for when JavaScript is off. Where it cannot (plain http, not
// localhost), a banner at the top says why, and pastes go in clear.
if (available()) {
  form.elements.encrypted.defaultChecked = true;
} else {
  const banner = document.getElementById("insecure-banner");
  banner.textContent =
    `This page cannot encrypt: it came over plain http (${location.origin}), and browsers ` +
    "only encrypt on secure pages (https, or http on localhost). Pastes made here are " +
    "stored in clear, readable by anyone with the link. Open the site over https to encrypt.";
  banner.hidden = false;
  form.elements.encrypted.checked = false;
}
updateAttach();
