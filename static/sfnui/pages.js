// sfnui: behaviours of the stop page. No inline scripts (the CSP allows none).
(function () {
  "use strict";

  // <form data-submit-once>: after the first submit, disable its buttons so a
  // double click sends one request. (The server also sends StopExecution at
  // most once per form, whatever the browser does.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-submit-once")) return;
    if (form.getAttribute("data-submitted")) { event.preventDefault(); return; }
    form.setAttribute("data-submitted", "1");
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      var busy = button.getAttribute("data-busy-label");
      // Disable after the submit has been dispatched, so the button's own
      // name/value (if any) is still sent.
      setTimeout(function () {
        button.disabled = true;
        if (busy) button.textContent = busy;
      }, 0);
    });
  });

  // Coming back with the browser's back button restores the page from cache:
  // re-enable the form (its token is still good: the server deduplicates).
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submit-once]").forEach(function (form) {
      form.removeAttribute("data-submitted");
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
    });
  });
})();
