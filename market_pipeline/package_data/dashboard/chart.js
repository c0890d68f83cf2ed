// The execution history as SVG built here: one bar per execution (height = duration), oldest
// left, and a line of the success rate. Failed executions are marked with a cross, executions
// with some failed symbols with "!", both over differently coloured bars.

const NS = "http://www.w3.org/2000/svg";
const W = 560;
const H = 190;
const PAD = { left: 46, right: 40, top: 16, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function kindOf(run) {
  if (run.status === "failed") return "failed";
  if (run.status === "running") return "running";
  return run.failed_symbols > 0 ? "partial" : "ok";
}

function durationLabel(value) {
  if (value >= 5400) return `${(value / 3600).toFixed(1)} h`;
  if (value >= 120) return `${Math.round(value / 60)} min`;
  return `${value === 0 || value >= 10 ? value.toFixed(0) : value.toFixed(1)} s`;
}

function axes(chart, maxDuration, plotW, plotH) {
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    chart.append(svg("line", { x1: PAD.left, x2: PAD.left + plotW, y1: y, y2: y, class: "grid" }));
    const left = svg("text", { x: PAD.left - 4, y: y + 3, class: "axis", "text-anchor": "end" }, durationLabel(maxDuration * fraction));
    const right = svg("text", { x: PAD.left + plotW + 4, y: y + 3, class: "axis" }, `${fraction * 100} %`);
    chart.append(left, right);
  }
  chart.append(svg("text", { x: PAD.left, y: H - 6, class: "axis" }, "oldest"));
  chart.append(svg("text", { x: PAD.left + plotW, y: H - 6, class: "axis", "text-anchor": "end" }, "newest"));
}

export function renderHistory(root, executions) {
  const runs = executions.slice(0, 50).reverse();
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const maxDuration = Math.max(1, ...runs.map((r) => r.duration_seconds ?? 0));
  const step = plotW / Math.max(runs.length, 1);
  const barW = Math.max(2, Math.min(24, step * 0.7));
  const failed = runs.filter((r) => kindOf(r) === "failed").length;
  const label = `${runs.length} executions, ${failed} failed; bars: duration, line: success rate`;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  chart.append(svg("title", {}, label));
  axes(chart, maxDuration, plotW, plotH);
  const points = [];
  runs.forEach((run, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    const height = Math.max(1, ((run.duration_seconds ?? 0) / maxDuration) * plotH);
    const kind = kindOf(run);
    const bar = svg("rect", { x, y: PAD.top + plotH - height, width: barW, height, class: `bar ${kind}` });
    bar.dataset.status = run.status;
    const rate = run.success_rate === null ? "n/a" : `${run.success_rate} %`;
    const text = `${run.started_at}: ${run.status}, ${run.duration_seconds ?? "?"} s, ` +
      `${run.successful_symbols}/${run.total_symbols} symbols ok (${rate})`;
    bar.append(svg("title", {}, text));
    chart.append(bar);
    if (kind === "failed" || kind === "partial") {
      chart.append(svg("text", { x: x + barW / 2, y: PAD.top + plotH - height - 3, class: "fail-mark" }, kind === "failed" ? "✕" : "!"));
    }
    if (run.success_rate !== null) points.push([x + barW / 2, PAD.top + plotH * (1 - run.success_rate / 100)]);
  });
  if (points.length > 1) chart.append(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "rate" }));
  for (const [x, y] of points) chart.append(svg("circle", { cx: x, cy: y, r: 2, class: "rate-dot" }));
  root.replaceChildren(chart);
}
