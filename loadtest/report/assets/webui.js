/* loadtest's additions to Locust's web UI (loadtest/webui.py). Above the "Exact latency (HDR)" table: the
   goodput so far, the report's percentile plots of TTFT and turn latency, from the data so far, and once a run has stopped a
   link to its report.html, served by the web UI, with the folder of its outputs. The plots are the
   report's own: their specs come from loadtest/report/charts.py (GET /loadtest/charts) and report.js
   draws them with uPlot, as in report.html. Locust renders the page with React; this only adds its own
   panel next to the table and takes it away when another tab shows. */
(function () {
  "use strict";
  var TAB = "loadtest-latency";
  var STATS_EVERY_MS = 2000;
  var CHARTS_EVERY_MS = 5000;
  // This script's URL ends with /loadtest/assets/webui.js, under Locust's --web-base-path.
  var base = document.currentScript.src.replace(/\/loadtest\/assets\/webui\.js(\?.*)?$/, "");
  var assets = base + "/loadtest/assets/";
  var panel = null;
  var timers = [];
  var drawer = null; // a promise of report.js's drawing, once uPlot and report.js are loaded

  function onTab() {
    return new URLSearchParams(window.location.search).get("tab") === TAB;
  }

  function tableBox() {
    var heading = document.querySelector('th[data-sortkey="metric"] + th[data-sortkey="scope"]');
    return heading ? heading.closest(".MuiTableContainer-root") : null;
  }

  function element(tag, id, className) {
    var node = document.createElement(tag);
    if (id) node.id = id;
    if (className) node.className = className;
    return node;
  }

  function build() {
    var box = element("div", "loadtest-panel");
    box.appendChild(element("div", "loadtest-goodput"));
    box.appendChild(element("div", "loadtest-charts"));
    var line = element("div", "loadtest-report", "loadtest-muted");
    line.textContent = "The report of a run appears here once it stops.";
    box.appendChild(line);
    return box;
  }

  function showReport(report) {
    var line = document.getElementById("loadtest-report");
    if (!line) return;
    line.textContent = "";
    if (!report) {
      line.className = "loadtest-muted";
      line.textContent = "The report of a run appears here once it stops.";
      return;
    }
    line.className = "";
    var link = element("a");
    link.href = base + report.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Latest report (report.html)";
    line.appendChild(link);
    line.appendChild(document.createTextNode(" of run " + report.run + ", with its other outputs in "));
    var folder = element("code");
    folder.textContent = report.folder;
    line.appendChild(folder);
  }

  function load(tag, attributes) {
    return new Promise(function (resolve, reject) {
      var node = document.createElement(tag);
      Object.keys(attributes).forEach(function (name) { node.setAttribute(name, attributes[name]); });
      node.onload = resolve;
      node.onerror = reject;
      document.head.appendChild(node);
    });
  }

  function reportDrawing() {
    if (drawer === null) {
      drawer = Promise.all([
        load("link", { rel: "stylesheet", href: assets + "uPlot.min.css" }),
        load("script", { src: assets + "uPlot.iife.min.js" }),
      ])
        .then(function () { return fetch(assets + "report.js", { credentials: "same-origin" }); })
        .then(function (answer) { return answer.text(); })
        // report.js draws every chart of #report-data into the box of its id when it runs.
        .then(function (source) { return new Function(source); }); // eslint-disable-line no-new-func
    }
    return drawer;
  }

  function showCharts(figures) {
    var holder = document.getElementById("loadtest-charts");
    if (!holder) return;
    if (!figures.length) {
      holder.textContent = "";
      return;
    }
    reportDrawing().then(function (draw) {
      // New boxes each time: report.js draws into empty boxes and watches their width.
      holder.textContent = "";
      var data = element("script", "report-data");
      data.type = "application/json";
      data.textContent = JSON.stringify({ charts: figures.map(function (f) { return f.spec; }) });
      holder.appendChild(data);
      figures.forEach(function (figure) {
        var box = element("figure", "", "loadtest-chart");
        var caption = element("figcaption");
        caption.textContent = figure.title + " percentiles";
        var detail = element("span", "", "loadtest-muted");
        detail.textContent = " " + figure.detail;
        caption.appendChild(detail);
        box.appendChild(caption);
        box.appendChild(element("div", figure.spec.id));
        holder.appendChild(box);
      });
      draw();
    });
  }

  function getJson(path, then) {
    fetch(base + path, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (data) { if (data) then(data); })
      .catch(function () { /* the next poll tries again */ });
  }

  function showGoodput(text) {
    var line = document.getElementById("loadtest-goodput");
    if (line) line.textContent = text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  function pollStats() {
    getJson("/loadtest/stats", function (data) {
      showReport(data.report);
      showGoodput(data.goodput);
    });
  }
  function pollCharts() { getJson("/loadtest/charts", function (data) { showCharts(data.charts); }); }

  function place() {
    var box = onTab() ? tableBox() : null;
    if (!box) {
      if (panel && panel.parentNode) panel.parentNode.removeChild(panel);
      timers.forEach(clearInterval);
      timers = [];
      return;
    }
    if (!panel) panel = build();
    if (panel.nextElementSibling !== box) box.parentNode.insertBefore(panel, box);
    if (!timers.length) {
      pollStats();
      pollCharts();
      timers = [setInterval(pollStats, STATS_EVERY_MS), setInterval(pollCharts, CHARTS_EVERY_MS)];
    }
  }

  new MutationObserver(place).observe(document.body, { childList: true, subtree: true });
  place();
})();
