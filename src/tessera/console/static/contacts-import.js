/* Import wizard: once a column mapping is changed, the last check no longer describes what
   would be imported, so the start button waits until the file is checked again. */
(function () {
  "use strict";
  document.addEventListener("change", function (e) {
    if (!e.target.closest || !e.target.closest("#mapping-form")) { return; }
    document.querySelectorAll("[data-start-import]").forEach(function (b) { b.disabled = true; });
    document.querySelectorAll("[data-stale-hint]").forEach(function (p) { p.hidden = false; });
  });
})();
