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

  // Typing a watch's list of Device IDs or SRVs chooses "These ...": without it the form
  // refused the list, typed under the choice still on "Mine" or "All" (review 55e).
  [["f-device_list", "devices"], ["f-srv_list", "srvs"]].forEach(function (pair) {
    var box = document.getElementById(pair[0]);
    var choice = document.querySelector('input[name="' + pair[1] + '"][value="list"]');
    if (box && choice) {
      box.addEventListener("input", function () {
        if (box.value.trim() !== "") { choice.checked = true; }
      });
    }
  });

  // An error summary takes the focus, so keyboard and screen-reader users land on it.
  var summary = document.querySelector(".error-summary");
  if (summary && summary.querySelector("a")) {
    summary.setAttribute("tabindex", "-1");
    summary.focus();
  }
});
