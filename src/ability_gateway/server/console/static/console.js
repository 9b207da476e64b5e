// Ability Gateway console: the little the pages need beyond htmx (no inline scripts: the
// Content-Security-Policy allows scripts from this server only).
"use strict";

// A "copy" button on every request snippet.
function addCopyButtons(root) {
  root.querySelectorAll("pre.snippet").forEach(function (pre) {
    if (pre.querySelector("button.copy")) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "copy";
    button.addEventListener("click", function () {
      var text = pre.getAttribute("data-text") || pre.textContent.replace(/copy$/, "");
      navigator.clipboard.writeText(text).then(function () { button.textContent = "✓"; });
    });
    pre.setAttribute("data-text", pre.textContent);
    pre.prepend(button);
  });
}

// A chosen file replaces the image URL: the URL field is no longer required.
document.addEventListener("change", function (event) {
  var input = event.target;
  if (input.name !== "image_file") return;
  var url = input.form && input.form.querySelector("[data-image-url]");
  if (url) url.required = !input.files.length;
});

document.addEventListener("DOMContentLoaded", function () { addCopyButtons(document); });
document.addEventListener("htmx:afterSwap", function (event) { addCopyButtons(event.target); });
