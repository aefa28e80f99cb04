// The encrypted show page: reads the key from the URL fragment (never sent to
// the server), asks for the password if the paste has one, decrypts,
// highlights with the vendored highlight.js (only the language needed is
// loaded) and offers copy, raw and download. A read-once paste is fetched only
// when the reader confirms. Every failure is said in plain words.
import { decryptLegacy, LEGACY_ENC } from "./legacy.js";
import { formatBytes } from "./bytes.js";
import { copyText } from "./copy.js";
import { available, b64urlDecode, checkFormat, checkIterations, decrypt, DecryptError } from "./crypto.js";
import { chunked, escapeHtml, lineNumbers, textBlocks } from "./lines.js";
import { core, GRAMMARS, LABELS } from "./languages.js";

const article = document.getElementById("paste");
const status = document.getElementById("paste-status");
const code = document.getElementById("paste-code");
const gutter = document.getElementById("paste-gutter");
const actions = document.getElementById("paste-actions");
const passwordForm = document.getElementById("password-form");
const burnForm = document.getElementById("burn-form");
const filesSection = document.getElementById("paste-files");
const filesList = document.getElementById("paste-files-list");

const MESSAGES = {
  nokey: "This paste is encrypted; the link you opened has no key: ask its author for the full link.",
  burnNokey:
    "This paste is encrypted and will be deleted once read, but the link you opened has no key: " +
    "reading it now would delete it without showing it. Ask its author for the full link.",
  key: "This paste is encrypted, and the key in the link you opened is malformed (the link may be cut short): ask its author for the full link.",
  auth: "This paste could not be decrypted: the key in the link is wrong, or the paste was altered.",
  password: "This paste could not be decrypted: the password is wrong (or the link's key is).",
  data: "This paste is damaged: the stored data cannot be decrypted.",
  kdf: "This paste asks for far more password-hashing work than any paste made here (a damaged or hostile paste): it is not decrypted.",
  payload: "This paste was decrypted but its content is not in a format this page understands.",
  format: "This paste is stored in an encryption format this page does not know (made by a newer Pasteur, or damaged).",
  nozip: "This paste is compressed, and this browser cannot decompress it (it has no DecompressionStream): open it in a current browser, or with `pasteur get`.",
  bomb: "This paste would expand to more than 64 MiB once decompressed, more than any paste made here: it is not shown (a damaged or hostile paste).",
  nocrypto: "This paste is encrypted, and this browser cannot decrypt it here: it only allows decryption on secure pages (https, or http on localhost). Open the link over https.",
};

let blobUrl = null;
let fileUrls = [];

function say(message, isError = true) {
  status.textContent = message;
  status.classList.toggle("error", isError);
  status.hidden = !message;
}

async function highlight(text, lang) {
  // highlight.js and its grammars come through languages.js, by hashed URLs.
  if (!lang || lang === "plaintext" || !Object.hasOwn(GRAMMARS, lang)) return escapeHtml(text);
  try {
    const [{ default: hljs }, { default: grammar }] = await Promise.all([core(), GRAMMARS[lang]()]);
    hljs.registerLanguage(lang, grammar);
    return hljs.highlight(text, { language: lang, ignoreIllegals: true }).value;
  } catch {
    return escapeHtml(text); // unknown language: plain text
  }
}

// A large paste is shown as plain text first, in blocks laid out only near
// the screen, and coloured once highlight.js is done with it: the text does
// not wait for the highlighter (the server's HIGHLIGHT_BUDGET, the same size).
const PLAIN_FIRST = 64 * 1024;
const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

async function render(payload) {
  const { text, lang } = payload;
  code.className = lang ? `hljs language-${lang}` : "hljs";
  article.classList.toggle("numbered", Boolean(payload.ln));
  gutter.hidden = !payload.ln;
  const numbers = payload.ln ? lineNumbers(text) : "";
  const big = text.length > PLAIN_FIRST;
  gutter.className = big ? `gutter d${String(numbers.length - numbers.lastIndexOf("\n") - 1)}` : "gutter";
  if (big) gutter.replaceChildren(textBlocks(numbers));
  else gutter.textContent = numbers;
  if (lang) {
    const known = Object.hasOwn(LABELS, lang);
    document.getElementById("paste-lang").textContent = known ? LABELS[lang] : lang;
  }
  setupActions(text, lang);
  const files = payload.files || [];
  showFiles(files);
  // A paste of attached files only has no text to show.
  const reveal = () => {
    article.hidden = !text && files.length > 0;
    actions.hidden = article.hidden;
  };
  if (!big) {
    code.innerHTML = await highlight(text, lang);
    return reveal();
  }
  code.replaceChildren(textBlocks(text));
  reveal();
  await painted();
  code.innerHTML = chunked(await highlight(text, lang));
}

// Attachments: name, size, declared type and a download link to a Blob URL.
// Blobs are typed application/octet-stream whatever the declared type, so a
// file is downloaded, never rendered in this origin.
function showFiles(files) {
  fileUrls.forEach((url) => URL.revokeObjectURL(url));
  fileUrls = [];
  filesList.replaceChildren(...files.map((file) => {
    const bytes = b64urlDecode(file.data);
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    fileUrls.push(url);
    const link = document.createElement("a");
    link.href = url;
    link.download = file.name || "attachment";
    link.textContent = file.name || "(no name)";
    const about = document.createElement("span");
    about.className = "hint";
    about.textContent = ` ${formatBytes(bytes.length)}${file.type ? `, ${file.type}` : ""}`;
    const item = document.createElement("li");
    item.append(link, about);
    return item;
  }));
  filesSection.hidden = files.length === 0;
}

function setupActions(text, lang) {
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  document.getElementById("paste-raw").href = blobUrl;
  const download = document.getElementById("paste-download");
  download.href = blobUrl;
  download.download = `${article.dataset.id || "paste"}.${extension(lang)}`;
  const copy = document.getElementById("paste-copy");
  copy.onclick = () => copyText(text, code, document.getElementById(copy.dataset.status));
}

// A download's extension by language ("py"), from the page (languages.py).
function extension(lang) {
  try {
    return JSON.parse(article.dataset.exts || "{}")[lang] || "txt";
  } catch {
    return "txt";
  }
}

// The password of a password paste, asked in the page's own form.
function askPassword() {
  passwordForm.hidden = false;
  const input = passwordForm.elements.password;
  input.focus();
  return new Promise((resolve) => {
    passwordForm.onsubmit = (event) => {
      event.preventDefault();
      passwordForm.hidden = true;
      resolve(input.value);
    };
  });
}

function fail(error) {
  if (!(error instanceof DecryptError)) return say(`This paste could not be shown: ${error.message}`);
  say(MESSAGES[error.kind]);
}

// The stored document's format ("fmt"; none: v1).
const format = () => (article.dataset.fmt ? Number(article.dataset.fmt) : 1);

async function decryptAndRender(key, iv, ct, kdf) {
  say("Decrypting…", false);
  await render(await decrypt(key, iv, ct, kdf, format()));
  say("");
  return true;
}

// A large paste's page holds no ciphertext: it is fetched from its raw view.
async function loadDocument() {
  say("Loading…", false);
  try {
    const response = await fetch(article.dataset.src, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok || !body.ct) throw new Error(body.error || `HTTP ${response.status}`);
    article.dataset.ct = body.ct;
    if (body.fmt) article.dataset.fmt = String(body.fmt);
    return true;
  } catch (error) {
    say(`This paste could not be loaded: ${error.message}`);
    return false;
  }
}

// Resolves to true once the paste is shown.
async function show() {
  article.hidden = true;
  actions.hidden = true;
  filesSection.hidden = true;
  code.textContent = "";
  const key = location.hash.slice(1);
  if (!key) return say(burnForm && !article.dataset.ct ? MESSAGES.burnNokey : MESSAGES.nokey);
  if (!available()) return say(MESSAGES.nocrypto);
  if (burnForm && !article.dataset.ct) return say(""); // waits for the reader to confirm
  if (article.dataset.enc === LEGACY_ENC) {
    // The original Pasteur's paste: its link's key, its scheme (legacy.js).
    try {
      say("Decrypting…", false);
      const ln = new URLSearchParams(location.search).get("ln") === "true";
      await render({ text: await decryptLegacy(key, article.dataset.ct), lang: article.dataset.lang, ln });
      say("");
      return true;
    } catch (error) {
      return fail(error);
    }
  }
  if (!article.dataset.ct && article.dataset.src && !(await loadDocument())) return false;
  const { ct, iv, salt, iter } = article.dataset;
  if (!salt) {
    try {
      return await decryptAndRender(key, iv, ct, null);
    } catch (error) {
      return fail(error);
    }
  }
  try {
    checkFormat(format()); // both before the password is asked for
    checkIterations(Number(iter));
  } catch (error) {
    return fail(error);
  }
  say("This paste is protected by a password as well as by its link.", false);
  for (;;) {
    const password = await askPassword();
    try {
      return await decryptAndRender(key, iv, ct, { salt, iter: Number(iter), password });
    } catch (error) {
      if (!(error instanceof DecryptError) || error.kind !== "auth") return fail(error);
      say(MESSAGES.password);
    }
  }
}

// Read-once: fetch the paste (the server deletes it as it answers), keeping
// the key of the link, which a form post to another URL would drop.
async function readOnce(event) {
  event.preventDefault();
  if (!location.hash.slice(1)) return say(MESSAGES.burnNokey);
  if (!available()) return say(MESSAGES.nocrypto);
  burnForm.querySelector("button").disabled = true;
  let response;
  try {
    response = await fetch(burnForm.action, { method: "POST", headers: { Accept: "application/json" } });
  } catch {
    burnForm.querySelector("button").disabled = false;
    return say("The server could not be reached; the paste was not read.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.ct) {
    burnForm.querySelector("button").disabled = false;
    return say(body.error || `The server refused (HTTP ${response.status}).`);
  }
  document.getElementById("burn").hidden = true;
  Object.assign(article.dataset, { ct: body.ct, iv: body.iv });
  if (body.fmt) article.dataset.fmt = String(body.fmt);
  if (body.kdf) Object.assign(article.dataset, { salt: body.kdf.salt, iter: String(body.kdf.iter) });
  window.removeEventListener("hashchange", show); // it is gone from the server now
  const gone = "This paste has now been deleted from the server: keep a copy if you need it.";
  if (await show()) say(gone, false);
  else status.textContent += ` ${gone}`;
}

if (burnForm) burnForm.addEventListener("submit", readOnce);
window.addEventListener("hashchange", show);
show();
