/* Tessera console behaviour. No inline scripts anywhere: the CSP allows only 'self'. */
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  // htmx requests carry the CSRF token (hx-headers on <body> does too; this covers swapped content).
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf()) { e.detail.headers["X-CSRF-Token"] = csrf(); }
  });

  // Toasts: from ?toast= on load (already rendered), and from an HX-Trigger {"toast": "..."}.
  function toast(text) {
    var box = document.getElementById("toasts");
    if (!box || !text) { return; }
    var el = document.createElement("div");
    el.className = "toast-msg";
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 5000);
  }
  document.addEventListener("toast", function (e) { toast(e.detail && e.detail.value); });
  function clearToastParam() {
    var box = document.getElementById("toasts");
    if (box && box.children.length) {
      setTimeout(function () { Array.prototype.forEach.call(box.children, function (c) { c.remove(); }); }, 5000);
      var url = new URL(window.location.href);
      if (url.searchParams.has("toast")) {
        url.searchParams.delete("toast");
        window.history.replaceState(null, "", url.pathname + (url.search || ""));
      }
    }
  }

  // Confirm dialogs for any submit button or form carrying data-confirm.
  var pending = null;
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("[data-confirm]");
    if (!btn || btn.dataset.confirmed) { return; }
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      if (!window.confirm(btn.dataset.confirm)) { e.preventDefault(); }
      return;
    }
    e.preventDefault();
    pending = btn;
    document.getElementById("confirm-text").textContent = btn.dataset.confirm;
    dialog.showModal();
  });
  document.addEventListener("close", function (e) {
    if (e.target.id !== "confirm-dialog" || !pending) { return; }
    var btn = pending;
    pending = null;
    if (e.target.returnValue === "ok") {
      btn.dataset.confirmed = "1";
      btn.click();
      delete btn.dataset.confirmed;
    }
  }, true);

  // Bulk selection: the header checkbox toggles every row of its table.
  document.addEventListener("change", function (e) {
    if (!e.target.matches("[data-select-all]")) { return; }
    var table = e.target.closest("table");
    table.querySelectorAll('input[name="ids"]').forEach(function (c) { c.checked = e.target.checked; });
  });

  // Keyboard: "/" focuses the global search, Escape closes open menus and results.
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    var typing = tag === "input" || tag === "textarea" || tag === "select" || e.target.isContentEditable;
    if (e.key === "/" && !typing) {
      var s = document.getElementById("global-search");
      if (s) { e.preventDefault(); s.focus(); }
    }
    if (e.key === "Escape") {
      document.querySelectorAll("details.user-menu[open]").forEach(function (d) { d.open = false; });
      var r = document.getElementById("search-results");
      if (r) { r.innerHTML = ""; }
    }
  });
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.user-menu[open]").forEach(function (d) {
      if (!d.contains(e.target)) { d.open = false; }
    });
  });

  // Sidebar: collapsed by default on phones.
  function sidebar() {
    var d = document.querySelector(".nav-toggle");
    if (d && window.matchMedia("(max-width: 991.98px)").matches) { d.open = false; }
  }

  // Charts: config in <script type="application/json" id="chart-…">, canvas[data-chart] points to it.
  function charts(root) {
    if (typeof window.Chart === "undefined") { return; }
    root.querySelectorAll("canvas[data-chart]").forEach(function (c) {
      if (c.dataset.ready) { return; }
      var src = document.getElementById(c.dataset.chart);
      if (!src) { return; }
      c.dataset.ready = "1";
      new window.Chart(c, JSON.parse(src.textContent));
    });
  }
  function loadCharts(root) {
    if (!root.querySelector("canvas[data-chart]")) { return; }
    if (window.Chart) { charts(root); return; }
    var s = document.createElement("script");
    var base = document.querySelector('script[src$="js/console.js"]').getAttribute("src").replace("js/console.js", "");
    s.src = base + "vendor/chart.umd.min.js";
    s.onload = function () { charts(document); };
    document.head.appendChild(s);
  }

  // Kanban: drag a card onto a column; htmx-style POST of card + column, then refresh on failure.
  function kanban(root) {
    root.querySelectorAll("[data-kanban]").forEach(function (board) {
      if (board.dataset.ready) { return; }
      board.dataset.ready = "1";
      var dragged = null;
      board.addEventListener("dragstart", function (e) {
        dragged = e.target.closest(".kanban-card");
        if (dragged) { e.dataTransfer.setData("text/plain", dragged.dataset.card); }
      });
      board.addEventListener("dragover", function (e) {
        var col = e.target.closest(".kanban-col");
        if (col) { e.preventDefault(); col.classList.add("drop-target"); }
      });
      board.addEventListener("dragleave", function (e) {
        var col = e.target.closest(".kanban-col");
        if (col) { col.classList.remove("drop-target"); }
      });
      board.addEventListener("drop", function (e) {
        var col = e.target.closest(".kanban-col");
        if (!col || !dragged) { return; }
        e.preventDefault();
        col.classList.remove("drop-target");
        col.querySelector(".kanban-cards").appendChild(dragged);
        var body = new URLSearchParams({ card: dragged.dataset.card, column: col.dataset.column });
        fetch(board.dataset.moveUrl, {
          method: "POST", body: body, credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf(), "HX-Request": "true" }
        }).then(function (r) {
          if (!r.ok) { toast(document.body.dataset.locale === "zh_Hans" ? "移动失败" : "Could not move the card"); window.location.reload(); }
        });
        dragged = null;
      });
    });
  }

  // Session idle warning, two minutes before the server-side idle timeout.
  function idle() {
    var minutes = parseInt(document.body.dataset.idleMinutes || "0", 10);
    var box = document.getElementById("idle-warning");
    if (!minutes || !box) { return; }
    var timer = null, warn = null;
    function arm() {
      clearTimeout(timer); clearTimeout(warn);
      box.hidden = true;
      warn = setTimeout(function () { box.hidden = false; }, Math.max(minutes - 2, 1) * 60000);
      timer = setTimeout(function () { window.location.href = window.location.pathname; }, minutes * 60000 + 5000);
    }
    box.querySelector("[data-idle-stay]").addEventListener("click", function () {
      fetch(window.location.pathname, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(arm);
    });
    document.addEventListener("htmx:afterRequest", arm);
    arm();
  }

  function init(root) { loadCharts(root); kanban(root); }
  document.addEventListener("DOMContentLoaded", function () {
    sidebar(); clearToastParam(); init(document); idle();
  });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); });
})();
