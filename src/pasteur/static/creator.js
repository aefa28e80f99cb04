// The creator's panel (only on the page of the paste's creator): a QR code of
// the paste's link, to open it on another device. For an encrypted paste the
// link is location.href, key included: it is read from this page and drawn
// here, never sent anywhere. The encoder is loaded only on this page.
const figure = document.getElementById("paste-qr");
const canvas = figure.querySelector("canvas");
const encrypted = figure.dataset.encrypted === "true";
const MODULE_PX = 4; // canvas pixels per module; CSS scales the canvas
const QUIET = 4; // modules of white margin, as the standard asks

// The link to encode: for an unencrypted paste its URL without query
// (?hl=, ?ln= are views) or fragment.
function link() {
  return encrypted ? location.href : location.origin + location.pathname;
}

async function draw() {
  const { default: qrcode } = await import("./qr/qrcode.mjs"); // hashed by the bundle
  const text = link();
  const qr = qrcode(0, "M"); // smallest version that holds it, 15% error correction
  qr.addData(text, "Byte"); // location.href is ASCII (percent-encoded)
  qr.make();
  const n = qr.getModuleCount();
  const size = (n + 2 * QUIET) * MODULE_PX;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // dark on light in either colour scheme: scanners expect it
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = "#000";
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (qr.isDark(row, col)) {
        ctx.fillRect((col + QUIET) * MODULE_PX, (row + QUIET) * MODULE_PX, MODULE_PX, MODULE_PX);
      }
    }
  }
  canvas.dataset.modules = String(n);
  figure.hidden = false;
}

function failed(error) {
  figure.hidden = false;
  figure.querySelector("figcaption").textContent = `The QR code could not be drawn: ${error.message}`;
}

// The link box of the first view: an encrypted paste's link takes its key
// from this page's address (the server never had it).
const linkBox = document.getElementById("paste-link");
function fillLinkBox() {
  if (linkBox && encrypted) linkBox.value = linkBox.dataset.link + location.hash;
}

// "Delete this paste…" carries the key to the confirmation page (in its
// fragment: never sent), whose "Keep it" brings it back (delete.js).
const deleteLink = document.getElementById("delete-this");
function keyToDelete() {
  if (deleteLink && encrypted) deleteLink.href = deleteLink.getAttribute("href").split("#")[0] + location.hash;
}

if (encrypted) {
  window.addEventListener("hashchange", () => {
    fillLinkBox();
    keyToDelete();
    draw().catch(failed);
  });
}
fillLinkBox();
keyToDelete();
draw().catch(failed);
