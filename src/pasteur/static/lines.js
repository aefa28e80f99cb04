// Text helpers for the encrypted show page and later.js.

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

// Lines in a block of a large paste (web/render.py's CHUNK_LINES; the CSS of
// .chunk gives a block that height while it is off screen).
const CHUNK_LINES = 200;

// Escaped or highlighted HTML (escaped text, `<span class="…">` and `</span>`
// only) in blocks of CHUNK_LINES lines, each well formed: spans still open at
// a block's end are closed there and opened again in the next. The browser
// lays out a block only when it nears the screen (content-visibility), so a
// large paste shows at once. The blocks' text is the text, newlines included.
export function chunked(html) {
  const blocks = [];
  const open = [];
  let block = "";
  let lines = 0;
  for (const token of html.split(/(<span[^>]*>|<\/span>|\n)/)) {
    if (token === "\n" && ++lines === CHUNK_LINES) {
      blocks.push(block + "\n" + "</span>".repeat(open.length));
      block = open.join("");
      lines = 0;
    } else if (token.startsWith("<span")) {
      open.push(token);
      block += token;
    } else if (token === "</span>") {
      open.pop();
      block += token;
    } else {
      block += token;
    }
  }
  if (block.replace(/<[^>]*>/g, "") !== "") blocks.push(block);
  return blocks.map((b) => `<span class="chunk">${b}</span>`).join("");
}

// A large text in the same blocks as chunked(escapeHtml(text)), built as
// nodes (a text node per block): nothing to escape, split with a regular
// expression or parse as HTML, for the first paint of a large encrypted paste
// (measured, 1 MB of Python in Chromium, laid out in #paste: the HTML way took
// 11-20 ms of main-thread CPU, this 3-6).
export function textBlocks(text) {
  const fragment = document.createDocumentFragment();
  for (let start = 0; start < text.length;) {
    let end = start;
    for (let n = 0; n < CHUNK_LINES; n++) {
      const newline = text.indexOf("\n", end);
      if (newline === -1) {
        end = text.length;
        break;
      }
      end = newline + 1;
    }
    const block = document.createElement("span");
    block.className = "chunk";
    block.textContent = text.slice(start, end);
    fragment.append(block);
    start = end;
  }
  return fragment;
}
