// sfnui: small behaviours, no inline scripts (the CSP allows none).
(function () {
  "use strict";

  // <button data-copy="text">: copy to the clipboard; where the Clipboard API
  // is missing (plain http), select the text in [data-copy-target] instead.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectTarget(button); });
    } else {
      selectTarget(button);
    }
  });

  function selectTarget(button) {
    var id = button.getAttribute("data-copy-target");
    var target = id && document.getElementById(id);
    if (!target) return;
    if (target.select) { target.focus(); target.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // <span data-since="ISO">: a live "running for" duration.
  function human(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 60) return Math.floor(seconds) + " s";
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    if (m < 60) return m + " m" + (s ? " " + s + " s" : "");
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 24) return h + " h" + (m ? " " + m + " m" : "");
    var d = Math.floor(h / 24); h = h % 24;
    return d + " d" + (h ? " " + h + " h" : "");
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(t)) el.textContent = human((now - t) / 1000);
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSettle", tick);

  // The theme switch (base.html) posts with htmx; the answer's "sfnui:theme"
  // event repaints the page in place. Without JS the form posts and reloads.
  document.addEventListener("sfnui:theme", function (event) {
    var theme = event.detail && event.detail.value;
    if (!theme) return;
    document.documentElement.setAttribute("data-theme", theme);
    var meta = document.querySelector("meta[name=color-scheme]");
    if (meta) meta.setAttribute("content", theme === "system" ? "light dark" : theme);
    document.querySelectorAll(".theme-switch button[name=theme]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.value === theme));
    });
  });
})();
