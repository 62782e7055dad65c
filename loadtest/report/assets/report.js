/* loadtest report: draws the charts described in #report-data with uPlot (see loadtest/report/charts.py):
   percentile distributions, series over time, and a capacity search's steps against the load. */
(function () {
  "use strict";
  var source = document.getElementById("report-data");
  if (!source) return;
  var specs = JSON.parse(source.textContent).charts || [];
  var GRID = "#eceef2";
  var AXIS = "#5f6b7a";
  var FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif";
  var LABEL_FONT = "600 12px system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif";

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  var clock = uPlot.fmtDate("{HH}:{mm}:{ss}");
  var minutes = uPlot.fmtDate("{HH}:{mm}");
  // Whole seconds and minutes only: a short run must not get ticks at :52.500.
  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  // x = log10(1 / (1 - p)): 0 -> 0%, 1 -> 90%, 2 -> 99%, 3 -> 99.9% ...
  function nines(x) {
    if (x <= 0) return "0%";
    if (x === 1) return "90%";
    if (x === 2) return "99%";
    return "99." + new Array(x - 1).join("9") + "%";
  }
  function percentile(x) {
    if (x == null) return "–";
    var p = 100 * (1 - Math.pow(10, -x));
    return p.toFixed(Math.max(1, Math.ceil(x) - 1)) + "%";
  }
  function number(v) {
    var a = Math.abs(v);
    var digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function tick(v) {
    if (v == null) return "";
    var a = Math.abs(v);
    return v.toLocaleString("en-US", { maximumFractionDigits: a >= 10 || a === 0 ? 0 : a >= 1 ? 1 : 3 });
  }
  function rgba(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  function fromZero(u, min, max) {
    if (max == null || !isFinite(max) || max <= 0) return [0, 1];
    return uPlot.rangeNum(0, max, 0.1, true);
  }

  function overlaps(box, boxes) {
    return boxes.some(function (b) {
      return box[0] < b[0] + b[2] && b[0] < box[0] + box[2] && box[1] < b[1] + b[3] && b[1] < box[1] + box[3];
    });
  }

  // Label p50, p90, ... max on the first curve of a distribution; the rightmost win when labels collide.
  function drawMarks(u, marks, color) {
    var ctx = u.ctx;
    var r = uPlot.pxRatio;
    var left = u.bbox.left;
    var right = u.bbox.left + u.bbox.width;
    var boxes = [];
    ctx.save();
    ctx.font = "600 " + Math.round(11 * r) + "px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    marks.slice().reverse().forEach(function (m) {
      var px = u.valToPos(m.x, "x", true);
      var py = u.valToPos(m.y, "y", true);
      if (px < left - 1 || px > right + 1) return;
      ctx.beginPath();
      ctx.arc(px, py, 3.5 * r, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff";
      ctx.fill();
      ctx.lineWidth = 2 * r;
      ctx.strokeStyle = color;
      ctx.stroke();
      var text = m.label + "  " + number(m.y);
      var w = ctx.measureText(text).width;
      var h = 15 * r;
      // Below-right of the point lies under a rising curve; at the right edge, above-left does.
      var flip = px + 8 * r + w > right;
      var tx = flip ? px - 8 * r - w : px + 8 * r;
      var ty = flip ? py - 11 * r : py + 11 * r;
      var box = [tx - 3 * r, ty - h / 2, w + 6 * r, h];
      if (overlaps(box, boxes)) return;
      boxes.push(box);
      ctx.fillStyle = "rgba(255,255,255,0.88)";
      ctx.fillRect(box[0], box[1], box[2], box[3]);
      ctx.fillStyle = "#1b1f24";
      ctx.fillText(text, tx, ty);
    });
    ctx.restore();
  }

  // A series of points only: the passing and failing steps of a capacity search.
  function noPath() { return null; }

  function xSeries(spec) {
    if (spec.kind === "time") {
      return { label: "UTC", value: function (u, v) { return v == null ? "–" : clock(utc(v)); } };
    }
    if (spec.kind === "load") {
      return { label: spec.x_label, value: function (u, v) { return v == null ? "–" : number(v); } };
    }
    return { label: "percentile", value: function (u, v) { return percentile(v); } };
  }

  function options(spec, width) {
    var time = spec.kind === "time";
    var load = spec.kind === "load";
    var points = spec.data[0].length;
    var series = [xSeries(spec)];
    spec.series.forEach(function (s) {
      var unit = s.scale === "users" || spec.unit === "ms" ? "" : " " + spec.unit;
      series.push({
        label: s.label,
        stroke: s.color,
        width: s.width,
        scale: s.scale,
        dash: s.dash ? [5, 4] : undefined,
        fill: s.fill ? rgba(s.color, 0.09) : undefined,
        paths: s.points_only ? noPath : s.step ? uPlot.paths.stepped({ align: 1 }) : undefined,
        points: s.points_only
          ? { show: true, size: 10, width: 2, fill: s.color }
          : { show: (time || load) && points <= 30 && !s.dash, size: 5, width: 1.5 },
        value: function (u, v) { return v == null ? "–" : number(v) + unit; },
      });
    });

    var x = {
      stroke: AXIS, font: FONT, labelFont: LABEL_FONT,
      grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1, size: 4 },
    };
    if (load) {
      x.label = spec.x_label;
      x.labelSize = 18;
      x.size = 34;
      x.values = function (u, splits) { return splits.map(tick); };
    } else if (time) {
      x.incrs = TIME_STEPS;
      x.space = 60;
      x.values = function (u, splits, axis, space, incr) {
        var f = incr >= 60 ? minutes : clock;
        return splits.map(function (v) { return f(utc(v)); });
      };
    } else {
      x.label = "percentile";
      x.labelSize = 18;
      x.size = 34;
      x.splits = function (u) {
        var out = [];
        for (var i = 0; i <= Math.floor(u.scales.x.max + 1e-9); i++) out.push(i);
        return out;
      };
      x.values = function (u, splits) { return splits.map(nines); };
    }
    var axes = [x];
    var scales = {
      x: load
        ? {
          time: false,
          // A little room either side, so the first and last steps' marks are whole.
          range: function (u, min, max) {
            var pad = min === max ? Math.max(1, min * 0.1) : (max - min) * 0.05;
            return [Math.max(0, min - pad), max + pad];
          },
        }
        : time
        ? {
          time: true,
          range: function (u, min, max) {
            var half = (spec.interval || 10) / 2;
            return min === max ? [min - half, max + half] : [min, max];
          },
        }
        : { time: false, range: function (u, min, max) { return [0, Math.max(1, max)]; } },
    };
    spec.axes.forEach(function (a) {
      var right = a.side === "right";
      scales[a.scale] = { range: fromZero };
      axes.push({
        scale: a.scale, label: a.label, side: right ? 1 : 3, size: 58, labelSize: 20,
        stroke: AXIS, font: FONT, labelFont: LABEL_FONT,
        grid: right ? { show: false } : { stroke: GRID, width: 1 },
        ticks: { stroke: GRID, width: 1, size: 4 },
        values: function (u, vals) { return vals.map(tick); },
      });
    });
    var hooks = {};
    if (spec.marks && spec.marks.length) {
      hooks.draw = [function (u) { drawMarks(u, spec.marks, spec.series[0].color); }];
    }
    return {
      width: width,
      height: spec.height,
      hooks: hooks,
      series: series,
      axes: axes,
      scales: scales,
      tzDate: utc,
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 7 } },
    };
  }

  specs.forEach(function (spec) {
    var box = document.getElementById(spec.id);
    if (!box) return;
    var width = box.clientWidth || 520;
    var plot = new uPlot(options(spec, width), spec.data, box);
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(function () {
        var w = box.clientWidth;
        if (w && w !== width) {
          width = w;
          plot.setSize({ width: w, height: spec.height });
        }
      }).observe(box);
    }
  });
})();
