// sfnui: picking executions to stop together (the list, the runaway finder).
// No inline scripts (the CSP allows none).
//
// <input type=checkbox data-bulk-pick>: one execution; <input data-bulk-all>:
// all of them on the page; [data-bulk-count]: how many are picked;
// [data-bulk-submit]: enabled once one is. While any is picked, the page's
// live refresh (htmx polling) pauses, since it would redraw the rows and drop
// the picks; [data-bulk-paused] says so.
(function () {
  "use strict";

  function picks() {
    return Array.prototype.slice.call(document.querySelectorAll("input[data-bulk-pick]"));
  }

  function update() {
    var all = picks();
    var picked = all.filter(function (box) { return box.checked; }).length;
    document.querySelectorAll("[data-bulk-count]").forEach(function (el) {
      el.textContent = String(picked);
    });
    document.querySelectorAll("[data-bulk-submit]").forEach(function (button) {
      button.disabled = picked === 0;
    });
    document.querySelectorAll("[data-bulk-all]").forEach(function (box) {
      box.checked = all.length > 0 && picked === all.length;
      box.indeterminate = picked > 0 && picked < all.length;
    });
    document.querySelectorAll("[data-bulk-paused]").forEach(function (el) {
      el.hidden = picked === 0;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target || !target.matches) return;
    if (target.matches("input[data-bulk-all]")) {
      picks().forEach(function (box) { box.checked = target.checked; });
      update();
    } else if (target.matches("input[data-bulk-pick]")) {
      update();
    }
  });

  // Keep the picks: no refresh while any is checked.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail && event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    var polling = !trigger || trigger.type !== "submit";
    if (polling && picks().some(function (box) { return box.checked; })) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:afterSettle", update);
  document.addEventListener("DOMContentLoaded", update);
  // Back from the dry run: the browser may restore the checked boxes.
  window.addEventListener("pageshow", update);
})();
