// Ability Gateway console: the little the pages need beyond htmx (no inline scripts: the
// Content-Security-Policy allows scripts from this server only).
"use strict";

// A "copy" button on every request snippet.
function addCopyButtons(root) {
  root.querySelectorAll("pre.snippet").forEach(function (pre) {
    var before = pre.previousElementSibling;
    if (before && before.classList.contains("copy")) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "copy";
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(pre.textContent).then(function () { button.textContent = "✓"; });
    });
    pre.before(button);
  });
}

// A chosen file replaces the image URL: the URL field is no longer required.
document.addEventListener("change", function (event) {
  var input = event.target;
  if (input.name !== "image_file") return;
  var url = input.form && input.form.querySelector("[data-image-url]");
  if (url) url.required = !input.files.length;
});

// Each output thumbnail says its size in pixels once it has loaded.
function addImageSizes(root) {
  root.querySelectorAll("img[data-output=image]").forEach(function (img) {
    var show = function () {
      var size = img.closest("figure").querySelector("[data-size]");
      if (size && img.naturalWidth) size.textContent = img.naturalWidth + " × " + img.naturalHeight + " px";
    };
    if (img.complete) show(); else img.addEventListener("load", show);
  });
}

function enhance(root) { addCopyButtons(root); addImageSizes(root); }
document.addEventListener("DOMContentLoaded", function () { enhance(document); });
document.addEventListener("htmx:afterSwap", function (event) { enhance(event.target); });
document.addEventListener("htmx:afterSettle", function (event) { enhance(event.target); });

// The usage chart (uPlot, vendored): calls per day, and the success rate on its own axis.
function drawUsageChart() {
  var element = document.getElementById("usage-chart");
  if (!element || !window.uPlot) return;
  var series = JSON.parse(element.getAttribute("data-series"));
  var labels = JSON.parse(element.getAttribute("data-labels"));
  if (!series.time.length) return;
  var options = {
    width: Math.max(320, element.clientWidth),
    height: 300,
    scales: { x: { time: true }, rate: { range: [0, 100] } },
    axes: [{}, { label: labels.calls }, { scale: "rate", side: 1, label: labels.successRate, grid: { show: false } }],
    series: [
      {},
      { label: labels.calls, stroke: "#1f5fbf", width: 2, fill: "rgba(31,95,191,0.12)", points: { show: true } },
      { label: labels.successRate, scale: "rate", stroke: "#1a7f37", width: 2, points: { show: true } },
      { label: labels.p95Ms, stroke: "#9a6700", width: 1, dash: [4, 4], show: false },
    ],
  };
  element.chart = new window.uPlot(options, [series.time, series.calls, series.successRate, series.p95Ms], element);
}

window.addEventListener("load", drawUsageChart);
