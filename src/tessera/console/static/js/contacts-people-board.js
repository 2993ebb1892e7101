/* Lifecycle board of contacts: keyboard moves and live column counts.
   The mouse drag and its POST live in console.js; this adds the same move for a focused card
   with the left/right arrow keys, announces it, and keeps the column counts true. */
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function announce(text) {
    var box = document.getElementById("toasts");
    if (!box || !text) { return; }
    var el = document.createElement("div");
    el.className = "toast-msg";
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 4000);
  }

  function recount(board) {
    board.querySelectorAll(".kanban-col").forEach(function (col) {
      var count = col.querySelector(".kanban-title .count");
      var n = String(col.querySelectorAll(".kanban-card").length);
      if (count && count.textContent !== n) { count.textContent = n; }
    });
  }

  function setup() {
    var wrap = document.getElementById("cp-board");
    if (!wrap) { return; }
    var board = wrap.querySelector("[data-kanban]");
    if (!board) { return; }
    var help = document.getElementById("cp-board-help");
    board.querySelectorAll(".kanban-card").forEach(function (card) {
      if (help && wrap.dataset.canMove === "1") { card.setAttribute("aria-describedby", help.id); }
    });
    var observer = new MutationObserver(function () { recount(board); });
    board.querySelectorAll(".kanban-cards").forEach(function (list) { observer.observe(list, { childList: true }); });

    board.addEventListener("keydown", function (e) {
      if (wrap.dataset.canMove !== "1" || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) { return; }
      var card = e.target.closest(".kanban-card");
      if (!card) { return; }
      var col = card.closest(".kanban-col");
      var next = e.key === "ArrowRight" ? col.nextElementSibling : col.previousElementSibling;
      if (!next || !next.classList.contains("kanban-col")) { return; }
      e.preventDefault();
      next.querySelector(".kanban-cards").appendChild(card);
      card.focus();
      fetch(board.dataset.moveUrl, {
        method: "POST",
        body: new URLSearchParams({ card: card.dataset.card, column: next.dataset.column }),
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf(), "HX-Request": "true" }
      }).then(function (r) {
        if (!r.ok) { announce(wrap.dataset.failedText); window.location.reload(); return; }
        announce((wrap.dataset.movedText || "").replace("%(stage)s", next.getAttribute("aria-label") || ""));
      });
    });
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
