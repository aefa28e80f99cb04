// A large clear paste comes as plain text: the server highlights only up to a
// budget (web/render.py, HIGHLIGHT_BUDGET). Once the text is on screen,
// highlight.js colours it here, with the classes and palette the server uses.
import { core, GRAMMARS } from "./languages.js";
import { chunked } from "./lines.js";

const code = document.querySelector("#paste code[data-lang]");
const lang = code.dataset.lang;

async function colour() {
  const [{ default: hljs }, { default: grammar }] = await Promise.all([core(), GRAMMARS[lang]()]);
  hljs.registerLanguage(lang, grammar);
  code.innerHTML = chunked(hljs.highlight(code.textContent, { language: lang, ignoreIllegals: true }).value);
}

// After the first paint: the text does not wait for the highlighter.
if (Object.hasOwn(GRAMMARS, lang)) requestAnimationFrame(() => setTimeout(colour, 0));
