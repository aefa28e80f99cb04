// Copy buttons. A button with data-copy="<id>" copies that element: a field's
// value, or an element's text without its line numbers (.ln). The outcome is
// said in the element named by its data-status: a live region whose room is
// reserved (nothing moves when it fills), emptied after a few seconds.
// show.js copies an encrypted paste's text with copyText.
const CLEAR_AFTER_MS = 3000;
const timers = new Map();

export function flash(status, message) {
  if (!status) return;
  status.textContent = message;
  clearTimeout(timers.get(status));
  timers.set(status, setTimeout(() => {
    status.textContent = "";
  }, CLEAR_AFTER_MS));
}

function select(element) {
  if (element instanceof HTMLInputElement) element.select();
  else getSelection().selectAllChildren(element);
}

// Copies text; if the browser refuses, selects `element` for the keyboard.
export async function copyText(text, element, status) {
  try {
    await navigator.clipboard.writeText(text);
    flash(status, "Copied.");
  } catch {
    select(element);
    flash(status, "Selected: press Ctrl+C.");
  }
}

function textOf(element) {
  if (element instanceof HTMLInputElement) return element.value;
  const copy = element.cloneNode(true);
  copy.querySelectorAll(".ln").forEach((n) => n.remove());
  return copy.textContent;
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", () => {
    const element = document.getElementById(button.dataset.copy);
    copyText(textOf(element), element, document.getElementById(button.dataset.status));
  });
}
