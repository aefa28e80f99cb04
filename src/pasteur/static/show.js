// The encrypted show page: reads the key from the URL fragment (never sent to
// the server), decrypts the paste, highlights it with the vendored
// highlight.js (only the one language needed is loaded) and offers copy, raw
// and download. Every failure is said in plain words.
import { available, decrypt, DecryptError } from "./crypto.js";
import { escapeHtml, splitHighlighted } from "./lines.js";

const article = document.getElementById("paste");
const status = document.getElementById("paste-status");
const code = document.getElementById("paste-code");
const actions = document.getElementById("paste-actions");
// highlight.js core comes with its versioned URL; a language module gets the
// same version query, so a refreshed highlight.js changes every URL.
const hljsCore = new URL(article.dataset.hljs || "hljs/core.min.js", import.meta.url);

const MESSAGES = {
  nokey: "This paste is encrypted; the link you opened has no key: ask its author for the full link.",
  key: "This paste is encrypted, and the key in the link you opened is malformed (the link may be cut short): ask its author for the full link.",
  auth: "This paste could not be decrypted: the key in the link is wrong, or the paste was altered.",
  data: "This paste is damaged: the stored data cannot be decrypted.",
  payload: "This paste was decrypted but its content is not in a format this page understands.",
  nocrypto: "This paste is encrypted, and this browser cannot decrypt it here: it only allows decryption on secure pages (https, or http on localhost). Open the link over https.",
};

let blobUrl = null;

function say(message, isError = true) {
  status.textContent = message;
  status.classList.toggle("error", isError);
  status.hidden = !message;
}

async function highlight(text, lang) {
  if (!lang || lang === "plaintext" || !/^[a-z0-9-]+$/.test(lang)) return escapeHtml(text);
  try {
    const [{ default: hljs }, { default: grammar }] = await Promise.all([
      import(hljsCore.href),
      import(new URL(`languages/${lang}.min.js${hljsCore.search}`, hljsCore).href),
    ]);
    hljs.registerLanguage(lang, grammar);
    return hljs.highlight(text, { language: lang, ignoreIllegals: true }).value;
  } catch {
    return escapeHtml(text); // unknown language: plain text
  }
}

async function render(payload) {
  const lines = splitHighlighted(await highlight(payload.text, payload.lang));
  code.innerHTML = lines.map((l) => `<span class="line">${l}\n</span>`).join("");
  code.className = payload.lang ? `hljs language-${payload.lang}` : "hljs";
  article.classList.toggle("numbered", Boolean(payload.ln));
  article.style.setProperty("--ln-width", `${String(lines.length).length + 1}ch`);
  if (payload.lang) document.getElementById("paste-lang").textContent = payload.lang;
  setupActions(payload.text);
  article.hidden = false;
  actions.hidden = false;
}

function setupActions(text) {
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  document.getElementById("paste-raw").href = blobUrl;
  const download = document.getElementById("paste-download");
  download.href = blobUrl;
  download.download = `${article.dataset.id || "paste"}.txt`;
  document.getElementById("paste-copy").onclick = async () => {
    try {
      await navigator.clipboard.writeText(text);
      say("Copied.", false);
    } catch {
      getSelection().selectAllChildren(code);
      say("Copying is not allowed here: the text is selected, copy it with your keyboard.", false);
    }
  };
}

async function show() {
  article.hidden = true;
  actions.hidden = true;
  code.textContent = "";
  const key = location.hash.slice(1);
  if (!key) return say(MESSAGES.nokey);
  if (!available()) return say(MESSAGES.nocrypto);
  say("Decrypting…", false);
  try {
    const payload = await decrypt(key, article.dataset.iv, article.dataset.ct);
    await render(payload);
    say("");
  } catch (error) {
    say(error instanceof DecryptError ? MESSAGES[error.kind] : `This paste could not be shown: ${error.message}`);
  }
}

window.addEventListener("hashchange", show);
show();
