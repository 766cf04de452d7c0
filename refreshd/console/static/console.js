// The console's only script: live overview updates and JSON syntax hints. Every page works
// without it; forms post to the server, which validates and answers with the page.
"use strict";

function liveUpdates() {
  const live = document.querySelector("[data-live]");
  if (!live) return;
  const url = live.getAttribute("data-live");
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.ok) live.innerHTML = await resp.text();
    } catch (err) {
      // Offline for a moment: keep what is shown; the next tick tries again.
    }
  }, 10000);
}

function jsonHints() {
  for (const area of document.querySelectorAll("textarea[data-json]")) {
    const hint = document.getElementById(area.getAttribute("aria-describedby"));
    const check = () => {
      try {
        JSON.parse(area.value);
        area.removeAttribute("aria-invalid");
        hint.textContent = "";
      } catch (err) {
        area.setAttribute("aria-invalid", "true");
        hint.textContent = "Not valid JSON yet: " + err.message;
      }
    };
    area.addEventListener("input", check);
    // Tab inserts two spaces in the editor; Escape then Tab leaves it (keyboard users).
    let escaped = false;
    area.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") { escaped = true; return; }
      if (ev.key === "Tab" && !ev.shiftKey && !escaped) {
        ev.preventDefault();
        const s = area.selectionStart;
        area.setRangeText("  ", s, area.selectionEnd, "end");
        check();
      }
      escaped = false;
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveUpdates();
  jsonHints();
  const problem = document.getElementById("problem");
  if (problem) problem.scrollIntoView({ block: "center" });
});
