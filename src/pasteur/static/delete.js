// The delete confirmation: "Keep it" goes back to the paste with the key of
// its link. An encrypted paste's key is in the URL fragment (#key), which no
// request carries and a plain link drops: creator.js puts it on the way here
// ("Delete this paste…" links to /<id>/delete#key), and this puts it back on
// "Keep it", so the paste opens decrypted again. Without a key (a clear
// paste, or the delete link opened elsewhere) "Keep it" stays /<id>.
const keep = document.getElementById("keep-link");

function carryKey() {
  keep.href = keep.getAttribute("href").split("#")[0] + location.hash;
}

window.addEventListener("hashchange", carryKey);
carryKey();
