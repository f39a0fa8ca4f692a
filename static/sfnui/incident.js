// sfnui: the incident features of the execution and history pages.
// No inline scripts (the CSP allows none); app.js does the copying itself.
(function () {
  "use strict";

  // "Copy for incident" also shows what it copies: open the summary's
  // <details> first (capture phase, before app.js copies or selects), so
  // that where there is no clipboard API the selected text is in view.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-incident-open]");
    if (!button) return;
    var box = document.getElementById(button.getAttribute("data-incident-open"));
    if (box && box.tagName === "DETAILS") box.open = true;
    if (navigator.clipboard && window.isSecureContext) return;
    // Plain http: app.js selects the text; try the old copy command on the
    // selection, and say what happened either way.
    setTimeout(function () {
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      var label = button.textContent;
      button.textContent = copied ? "Copied" : "Selected: press Ctrl+C";
      setTimeout(function () { button.textContent = label; }, 2500);
    }, 0);
  }, true);

  // The live part of a running execution's page brings a fresh summary every
  // few seconds (out of band). Not while someone is in the text, selecting
  // it by hand: that would drop their selection.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var id = target && target.id;
    if (id !== "incident-text" && id !== "incident-copy") return;
    var active = document.activeElement;
    if (active && active.id === "incident-text") event.detail.shouldSwap = false;
  });
})();
