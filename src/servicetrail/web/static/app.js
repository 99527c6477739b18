// servicetrail: small progressive enhancements. The screen works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // Search links stay short and shareable: empty fields (and the default scope) are not sent.
  var search = document.querySelector("form.search-form");
  if (search) {
    search.addEventListener("submit", function () {
      search.querySelectorAll("input[name], select[name]").forEach(function (field) {
        var empty = field.value.trim() === "" || (field.name === "scope" && field.value === "all");
        if (empty) { field.disabled = true; }
      });
      // re-enable after the browser has read the form, so Back shows the fields as they were
      window.setTimeout(function () {
        search.querySelectorAll("[disabled]").forEach(function (field) { field.disabled = false; });
      }, 0);
    });
  }

  // An error summary takes the focus, so keyboard and screen-reader users land on it.
  var summary = document.querySelector(".error-summary");
  if (summary && summary.querySelector("a")) {
    summary.setAttribute("tabindex", "-1");
    summary.focus();
  }
});
