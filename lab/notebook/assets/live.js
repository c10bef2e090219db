// The live view of a running load (lab/notebook/live.py): an anywidget ES module, no imports,
// no CDN. It draws what the Python side puts in its traits -- `points` (one row per interval:
// [t_s, p50_ms, p99_ms, max_ms, requests_per_s, errors_per_s]), `markers` ([{t_s, label}]),
// `stats` (the running figures; a percentile too few requests support is the text "too few"),
// `caption` (where the live percentiles come from, and how close they are) and `span_seconds` (the run's planned length) -- on one canvas, at most once per animation frame, and counts
// its redraws in `redraws` so that a browser test can see it move.

const COLOURS = { p50: "#1f77b4", p99: "#ff7f0e", max: "#7f7f7f", rate: "#2ca02c",
                  errors: "#d62728", marker: "#444", grid: "#e6e6e6", minorGrid: "#f3f3f3",
                  text: "#222", minorText: "#888" };
const HEIGHT = 320;
const MARGIN = { left: 64, right: 16, top: 24, bottom: 26 };
const GAP = 30; // between the latency plot and the rate plot

export function niceNumber(value) {
  if (typeof value === "string") return value; // a mark such as "too few", not a number
  // null is what Python's NaN arrives as (no request succeeded): isFinite(null) is true, and
  // null.toFixed would throw and freeze the view on its last picture.
  if (typeof value !== "number" || !isFinite(value)) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function milliseconds(value) {
  if (typeof value === "string") return value;
  return typeof value === "number" && isFinite(value) ? `${niceNumber(value)} ms` : "–";
}

function rateText(value) {
  return Math.round(value).toLocaleString("en-US");
}

export function statsText(stats) {
  if (!stats || !stats.requests) return stats && stats.phase ? stats.phase : "waiting for a run";
  const errors = stats.errors ? `, ${rateText(stats.errors)} errors` : ", no errors";
  return `${stats.phase} ${niceNumber(stats.elapsed_s)} s: ${rateText(stats.requests)} requests, ` +
    `${rateText(stats.rps)} req/s${errors} | p50 ${milliseconds(stats.p50_ms)}, ` +
    `p99 ${milliseconds(stats.p99_ms)}, p99.9 ${milliseconds(stats.p99_9_ms)}, ` +
    `max ${milliseconds(stats.max_ms)}`;
}

// Gridlines of a log axis from 10^d0 to 10^d1: every decade, and 2 and 5 within it while the
// lines stay `minGap` px apart (a 44 ms line is read between 20 and 50, not between 10 and 100).
export function logGridlines(d0, d1, pixelsPerDecade, minGap = 14) {
  const lines = [];
  const steps = pixelsPerDecade * Math.log10(2.5) >= minGap ? [1, 2, 5] : [1];
  for (let d = d0; d <= d1; d++) {
    for (const m of steps) {
      const value = m * Math.pow(10, d);
      if (d === d1 && m > 1) break;
      lines.push({ value, major: m === 1 });
    }
  }
  return lines;
}

// The top of a linear axis from zero: the first 1, 2 or 5 x 10^k at or above `value`, so the
// axis reads 100,000/s rather than 75,110/s.
export function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 5, 10]) if (m * power >= value * (1 - 1e-9)) return m * power;
  return 10 * power;
}

function draw(canvas, model) {
  const points = model.get("points") || [];
  const markers = model.get("markers") || [];
  const window_s = model.get("window_seconds") || 30;
  const span_s = model.get("span_seconds") || window_s; // the run's planned length
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(320, canvas.parentElement.clientWidth || 640);
  canvas.width = width * ratio;
  canvas.height = HEIGHT * ratio;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${HEIGHT}px`;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, HEIGHT);
  g.font = "11px sans-serif";

  const plotWidth = width - MARGIN.left - MARGIN.right;
  const latencyHeight = Math.round((HEIGHT - MARGIN.top - MARGIN.bottom - GAP) * 0.68);
  const rateTop = MARGIN.top + latencyHeight + GAP;
  const rateHeight = HEIGHT - MARGIN.bottom - rateTop;

  const last = points.length ? points[points.length - 1][0] : 0;
  const x1 = Math.max(Math.min(span_s, window_s), last);
  const x0 = Math.max(0, x1 - window_s);
  const x = (t) => MARGIN.left + ((t - x0) / (x1 - x0)) * plotWidth;

  // Latency: log scale over whole decades that hold every value shown.
  let low = Infinity, high = 0;
  for (const p of points) {
    for (const v of [p[1], p[2], p[3]]) {
      if (v > 0 && isFinite(v)) { low = Math.min(low, v); high = Math.max(high, v); }
    }
  }
  const hasLatency = isFinite(low);
  if (!hasLatency) { low = 0.01; high = 10; }
  const d0 = Math.floor(Math.log10(low)), d1 = Math.max(Math.ceil(Math.log10(high)), d0 + 1);
  const y = (ms) => MARGIN.top + latencyHeight -
    ((Math.log10(ms) - d0) / (d1 - d0)) * latencyHeight;

  g.strokeStyle = COLOURS.grid;
  g.fillStyle = COLOURS.text;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const { value, major } of logGridlines(d0, d1, latencyHeight / (d1 - d0))) {
    const yy = y(value);
    g.strokeStyle = major ? COLOURS.grid : COLOURS.minorGrid;
    g.beginPath(); g.moveTo(MARGIN.left, yy); g.lineTo(MARGIN.left + plotWidth, yy); g.stroke();
    g.fillStyle = major ? COLOURS.text : COLOURS.minorText;
    g.fillText(`${niceNumber(value)} ms`, MARGIN.left - 6, yy);
  }
  if (!hasLatency && points.length) {
    // every request failed: say so where the lines would be, rather than leave empty axes
    g.fillStyle = COLOURS.errors;
    g.textAlign = "center";
    g.fillText("no request succeeded: no latency to draw", MARGIN.left + plotWidth / 2,
               MARGIN.top + latencyHeight / 2);
    g.textAlign = "right";
  }

  // A gap wherever a value is missing (null: no success in the interval on the latency axes, a
  // partial last interval on the rate axis) or, with `zeroIsGap`, zero (log axes; errors/s).
  const line = (column, colour, scaleY, { dash = [], zeroIsGap = false } = {}) => {
    g.strokeStyle = colour;
    g.lineWidth = 1.5;
    g.setLineDash(dash);
    g.beginPath();
    let pen = false;
    for (const p of points) {
      const v = p[column];
      if (p[0] < x0 || typeof v !== "number" || !isFinite(v) || v < 0 || (zeroIsGap && v === 0)) {
        pen = false; continue;
      }
      const xx = x(p[0]), yy = scaleY(v);
      if (pen) g.lineTo(xx, yy); else g.moveTo(xx, yy);
      pen = true;
    }
    g.stroke();
    g.setLineDash([]);
  };
  line(3, COLOURS.max, y, { dash: [3, 3], zeroIsGap: true });
  line(2, COLOURS.p99, y, { zeroIsGap: true });
  line(1, COLOURS.p50, y, { zeroIsGap: true });

  // Rate and errors: linear, from zero.
  let highest = 0;
  for (const p of points) if (p[0] >= x0) highest = Math.max(highest, p[4] || 0, p[5] || 0);
  const rateMax = niceCeiling(highest);
  const yr = (v) => rateTop + rateHeight - (v / rateMax) * rateHeight;
  g.fillStyle = COLOURS.text;
  for (const v of [0, rateMax / 2, rateMax]) {
    g.strokeStyle = COLOURS.grid;
    g.beginPath(); g.moveTo(MARGIN.left, yr(v)); g.lineTo(MARGIN.left + plotWidth, yr(v)); g.stroke();
    g.fillText(`${v.toLocaleString("en-US", { maximumFractionDigits: 1 })}/s`, MARGIN.left - 6, yr(v));
  }
  line(4, COLOURS.rate, yr);
  // Errors/s only in a run that has errors (a red line along zero would read as an alarm), zeros
  // included then, so one bad interval is a visible spike; drawn last: where every request fails
  // it covers requests/s.
  if (points.some((p) => p[5] > 0)) line(5, COLOURS.errors, yr);

  // Time axis.
  g.fillStyle = COLOURS.text;
  g.textAlign = "center";
  g.textBaseline = "top";
  const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60].find((s) => (x1 - x0) / s <= 10) || 60;
  for (let k = Math.ceil(x0 / step); k * step <= x1 + 1e-9; k++) {
    const t = k * step;
    g.fillText(`${Number(t.toFixed(1))} s`, x(t), HEIGHT - MARGIN.bottom + 6);
  }

  // Markers: a dashed line through both plots, the label written along it on a pale box, so
  // a trace running under the label does not make it unreadable.
  for (const m of markers) {
    if (m.t_s < x0 || m.t_s > x1) continue;
    const xx = x(m.t_s);
    g.strokeStyle = COLOURS.marker;
    g.setLineDash([4, 3]);
    g.beginPath(); g.moveTo(xx, MARGIN.top); g.lineTo(xx, rateTop + rateHeight); g.stroke();
    g.setLineDash([]);
    g.save();
    g.translate(xx + 4, MARGIN.top + 2);
    g.rotate(Math.PI / 2);
    g.textAlign = "left";
    g.textBaseline = "bottom";
    g.fillStyle = "rgba(255, 255, 255, 0.85)";
    g.fillRect(-2, -13, g.measureText(m.label).width + 4, 14);
    g.fillStyle = COLOURS.marker;
    g.fillText(m.label, 0, 0);
    g.restore();
  }

  // Labels of the two plots.
  g.textAlign = "left";
  g.textBaseline = "top";
  const legend = [["p50", COLOURS.p50], ["p99", COLOURS.p99], ["max", COLOURS.max]];
  let lx = MARGIN.left + 6;
  g.fillStyle = COLOURS.text;
  g.fillText("latency per 100 ms (log):", lx, 6);
  lx += g.measureText("latency per 100 ms (log): ").width;
  for (const [name, colour] of legend) {
    g.fillStyle = colour;
    g.fillText(name, lx, 6);
    lx += g.measureText(`${name}  `).width;
  }
  g.fillStyle = COLOURS.rate;
  g.fillText("requests/s", MARGIN.left + 6, rateTop - 14);
  g.fillStyle = COLOURS.errors;
  g.fillText("errors/s", MARGIN.left + 6 + g.measureText("requests/s  ").width, rateTop - 14);
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "lab-live-view";
  root.style.maxWidth = "100%";
  root.style.fontFamily = "sans-serif";
  const title = document.createElement("div");
  title.style.fontSize = "13px";
  title.style.fontWeight = "bold";
  const text = document.createElement("div");
  text.style.fontSize = "12px";
  text.style.margin = "2px 0 4px 0";
  text.style.fontVariantNumeric = "tabular-nums";
  const caption = document.createElement("div");
  caption.style.fontSize = "11px";
  caption.style.color = "#555";
  caption.style.margin = "0 0 4px 0";
  const canvas = document.createElement("canvas");
  canvas.style.display = "block";
  root.append(title, text, caption, canvas);
  el.appendChild(root);

  let pending = false;
  let redraws = 0;
  const redraw = () => {
    pending = false;
    title.textContent = model.get("title");
    text.textContent = statsText(model.get("stats"));
    caption.textContent = model.get("caption");
    draw(canvas, model);
    redraws += 1;
    model.set("redraws", redraws);
    model.save_changes();
  };
  const schedule = () => {
    if (!pending) { pending = true; requestAnimationFrame(redraw); }
  };
  for (const name of ["points", "markers", "stats", "title", "caption", "window_seconds", "span_seconds"]) {
    model.on(`change:${name}`, schedule);
  }
  // Asked from Python (LiveView.scroll_into_view): the window follows a run started by code.
  // Centred: what is above it in a panel (Run, Stop, the progress line) stays in sight, and a
  // caption that wraps onto another line later does not push the plot's bottom out of it.
  model.on("change:reveals", () => root.scrollIntoView({ block: "center" }));
  const resize = new ResizeObserver(schedule);
  resize.observe(root);
  schedule();
  return () => resize.disconnect();
}

export default { render };
