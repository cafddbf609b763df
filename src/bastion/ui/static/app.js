/* bastion dashboard: charts (uPlot, vendored) and the lineage graph's interactions.
   Same-origin file, no inline script anywhere (the pages' Content Security Policy forbids it).
   Data arrives in a data-payload attribute, escaped by the server and parsed as JSON here:
   nothing from the store is ever written as HTML by this script (textContent only). */
"use strict";

(function () {
  var COLOURS = {
    critical: "#7a0019", high: "#d7301f", medium: "#fc8d59", low: "#fdcc8a", info: "#9e9e9e",
    data: "#1b9e77", code: "#d95f02", artifact: "#7570b3", testing: "#e7298a",
    deployment: "#66a61e", monitoring: "#e6ab02",
    passed: "#2e7d32", failed: "#c62828", undecided: "#f9a825",
    allowed: "#2e7d32", flagged: "#f9a825", blocked: "#c62828", refused: "#6d4c41",
    p50: "#1565c0", p95: "#6a1b9a", p99: "#c62828",
    DRF001: "#1b9e77", DRF002: "#d95f02", DRF003: "#7570b3", DRF004: "#e7298a"
  };

  function payload() {
    var holder = document.getElementById("trend-data");
    if (!holder) { return null; }
    try { return JSON.parse(holder.getAttribute("data-payload") || "null"); } catch (e) { return null; }
  }

  function seconds(labels) {
    return labels.map(function (label) {
      var t = Date.parse(label.length === 10 ? label + "T00:00:00Z" : label);
      return isNaN(t) ? 0 : t / 1000;
    });
  }

  function chart(element, labels, series, unit) {
    if (typeof uPlot === "undefined" || !labels || !labels.length) { return; }
    var names = Object.keys(series);
    var data = [seconds(labels)];
    var opts = {
      width: Math.max(320, element.clientWidth || 640),
      height: 240,
      scales: { x: { time: true } },
      axes: [{}, { label: unit || "" }],
      series: [{}]
    };
    names.forEach(function (name) {
      data.push(series[name]);
      opts.series.push({ label: name, stroke: COLOURS[name] || "#455a64", width: 2, spanGaps: true });
    });
    element.textContent = "";
    var plot = new uPlot(opts, data, element);
    element.setAttribute("data-rendered", "true");
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(320, element.clientWidth || 640), height: 240 });
    });
  }

  function charts() {
    var data = payload();
    if (!data) { return; }
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var kind = element.getAttribute("data-chart");
      if (kind === "severity" || kind === "stage" || kind === "drift" || kind === "runs") {
        chart(element, data.days, data[kind], kind === "runs" ? "runs" : "findings");
      } else if (kind === "guard" && data.guard) {
        chart(element, data.guard.hours, data.guard.outcomes, "requests");
      } else if (kind === "latency" && data.guard) {
        chart(element, data.guard.hours, data.guard.latency, "ms");
      }
    });
  }

  function lineage() {
    var svg = document.getElementById("lineage-graph");
    if (!svg) { return; }
    var edges = Array.prototype.slice.call(svg.querySelectorAll("g.edge"));
    svg.querySelectorAll("g.node").forEach(function (node) {
      var digest = node.getAttribute("data-digest");
      node.addEventListener("mouseenter", function () {
        svg.classList.add("highlighting");
        node.classList.add("hot");
        edges.forEach(function (edge) {
          if (edge.getAttribute("data-up") === digest || edge.getAttribute("data-down") === digest) {
            edge.classList.add("hot");
          }
        });
      });
      node.addEventListener("mouseleave", function () {
        svg.classList.remove("highlighting");
        node.classList.remove("hot");
        edges.forEach(function (edge) { edge.classList.remove("hot"); });
      });
    });
    var box = svg.getAttribute("viewBox").split(" ").map(Number);
    var dragging = null;
    var moved = false;
    function apply() { svg.setAttribute("viewBox", box.join(" ")); }
    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      var factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      var rect = svg.getBoundingClientRect();
      var px = box[0] + (event.clientX - rect.left) / rect.width * box[2];
      var py = box[1] + (event.clientY - rect.top) / rect.height * box[3];
      box = [px - (px - box[0]) * factor, py - (py - box[1]) * factor, box[2] * factor, box[3] * factor];
      apply();
    }, { passive: false });
    svg.addEventListener("pointerdown", function (event) {
      dragging = { x: event.clientX, y: event.clientY, box: box.slice() };
      moved = false;
    });
    window.addEventListener("pointermove", function (event) {
      if (!dragging) { return; }
      var rect = svg.getBoundingClientRect();
      var dx = (event.clientX - dragging.x) / rect.width * box[2];
      var dy = (event.clientY - dragging.y) / rect.height * box[3];
      if (Math.abs(event.clientX - dragging.x) + Math.abs(event.clientY - dragging.y) > 4) { moved = true; }
      box = [dragging.box[0] - dx, dragging.box[1] - dy, box[2], box[3]];
      apply();
    });
    window.addEventListener("pointerup", function () { dragging = null; });
    svg.addEventListener("click", function (event) {
      if (moved) { event.preventDefault(); moved = false; }
    }, true);
  }

  // the guard page's "refresh every 10 s" (the server reads only what the guard appended)
  function live() {
    var box = document.getElementById("live-refresh");
    if (!box) { return; }
    var key = "bastion-live-refresh";
    box.checked = window.sessionStorage.getItem(key) === "on";
    var timer = null;
    function arm() {
      if (timer) { window.clearTimeout(timer); timer = null; }
      if (box.checked) { timer = window.setTimeout(function () { window.location.reload(); }, 10000); }
    }
    box.addEventListener("change", function () {
      window.sessionStorage.setItem(key, box.checked ? "on" : "off");
      arm();
    });
    arm();
  }

  document.addEventListener("DOMContentLoaded", function () {
    charts();
    lineage();
    live();
  });
})();
