// Text helpers for the encrypted show page.

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Line numbers as one text, "1\n2\n…", for the gutter beside the code (one
// text node, not an element per line; the same as web/render.py's gutter). A
// final newline ends the last line rather than starting one.
export function lineNumbers(text) {
  let n = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++;
  if (text && !text.endsWith("\n")) n++;
  return Array.from({ length: n }, (_, i) => i + 1).join("\n");
}
