// sfnui: the keyboard. "/" search, j/k rows, Enter open, "g h" history,
// "?" the list of keys (the <dialog> in templates/_keys_help.html).
// Rows are any <tr data-row-link="URL">: that attribute is the contract
// every table page keeps (data-history-link="URL" adds "g h" to a row).
(function () {
  "use strict";

  var CURRENT = "kb-current";
  var current = null;      // the selected row's data-row-link, kept across htmx swaps
  var pendingG = 0;        // when "g" was pressed, for "g h"

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])");
  }

  function rows() {
    return Array.prototype.filter.call(
      document.querySelectorAll("tr[data-row-link]"),
      function (row) { return row.offsetParent !== null; }  // visible only
    );
  }

  function selectedRow() {
    if (!current) return null;
    var all = rows();
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-row-link") === current) return all[i];
    }
    return null;
  }

  function mark(row, focus) {
    document.querySelectorAll("tr." + CURRENT).forEach(function (other) {
      if (other !== row) { other.classList.remove(CURRENT); other.removeAttribute("aria-current"); }
    });
    if (!row) { current = null; return; }
    current = row.getAttribute("data-row-link");
    row.classList.add(CURRENT);
    row.setAttribute("aria-current", "true");
    if (!row.hasAttribute("tabindex")) row.setAttribute("tabindex", "-1");
    if (focus) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.indexOf(selectedRow());
    var next = at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + step));
    mark(all[next], true);
  }

  function go(url) {
    if (url) window.location.assign(url);
  }

  function historyLink() {
    var row = selectedRow();
    if (row && row.getAttribute("data-history-link")) return row.getAttribute("data-history-link");
    var own = document.querySelector("[data-history-link]:not(tr)");
    return own ? own.getAttribute("data-history-link") : null;
  }

  function help() {
    var dialog = document.getElementById("keys-help");
    if (!dialog || typeof dialog.showModal !== "function") return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-keys-help]")) help();
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      // Esc leaves the search box, so that the keys work again.
      if (event.key === "Escape" && event.target.closest("header .jump")) event.target.blur();
      return;
    }
    var dialog = document.getElementById("keys-help");
    if (dialog && dialog.open) {
      if (event.key === "?") { event.preventDefault(); dialog.close(); }
      return;  // Esc closes it natively
    }
    var key = event.key;
    var afterG = pendingG && Date.now() - pendingG < 1500;
    pendingG = 0;
    if (afterG && key === "h") {
      event.preventDefault();
      go(historyLink());
      return;
    }
    switch (key) {
      case "/": {
        var search = document.querySelector("header .jump input[type=search]");
        if (!search) return;
        event.preventDefault();
        search.focus();
        search.select();
        return;
      }
      case "?":
        event.preventDefault();
        help();
        return;
      case "j":
      case "k":
        event.preventDefault();
        move(key === "j" ? 1 : -1);
        return;
      case "g":
        pendingG = Date.now();
        return;
      case "Enter": {
        // Only from the row itself (or nothing focused): Enter on a link or
        // a button inside the page keeps its own meaning.
        var row = selectedRow();
        var active = document.activeElement;
        if (row && (active === row || active === document.body || !active)) {
          event.preventDefault();
          go(row.getAttribute("data-row-link"));
        }
        return;
      }
      case "Escape":
        mark(null, false);
        return;
    }
  });

  // A live list is redrawn by htmx every few seconds: keep the selection (and
  // the focus, if it was on the row) on the same execution.
  document.addEventListener("htmx:afterSettle", function () {
    if (!current) return;
    var hadFocus = document.activeElement === document.body || !document.activeElement;
    var row = selectedRow();
    if (!row) { current = null; return; }
    mark(row, false);
    if (hadFocus) row.focus({ preventScroll: true });
  });
})();
