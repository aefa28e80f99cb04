// Line helpers for the encrypted show page.

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Splits highlight.js output (escaped text, `<span class="…">` and `</span>`
// only) into one well-formed HTML string per line: spans still open at a line
// break are closed at its end and opened again on the next line. A final
// newline does not make an extra empty line.
export function splitHighlighted(html) {
  const lines = [];
  const open = [];
  let line = "";
  for (const token of html.split(/(<span[^>]*>|<\/span>|\n)/)) {
    if (token === "\n") {
      lines.push(line + "</span>".repeat(open.length));
      line = open.join("");
    } else if (token.startsWith("<span")) {
      open.push(token);
      line += token;
    } else if (token === "</span>") {
      open.pop();
      line += token;
    } else {
      line += token;
    }
  }
  if (line.replace(/<[^>]*>/g, "") !== "" || lines.length === 0) lines.push(line);
  return lines;
}
