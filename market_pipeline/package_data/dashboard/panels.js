// The health banner, the open failures and the pair detail: rebuilt from each answer, with
// every server value as text.

import { byId, el, setText } from "./dom.js";
import { age, percent, seconds, stamp, when } from "./format.js";

const TREND_WINDOW = 5;

function rates(executions) {
  return executions.map((e) => e.success_rate).filter((rate) => rate !== null);
}

function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

// "Is it getting better": the mean success rate of the newest executions against the ones
// before them.
export function trendText(executions) {
  const known = rates(executions);
  if (known.length < 2) return "Trend: not enough executions yet.";
  const half = Math.min(TREND_WINDOW, Math.floor(known.length / 2));
  const recent = mean(known.slice(0, half));
  const before = mean(known.slice(half, half * 2));
  const word = recent > before + 0.5 ? "improving ↑" : recent < before - 0.5 ? "worsening ↓" : "steady →";
  return `Trend: ${word}. Success rate of the last ${half} executions ${percent(recent)}, of the ${half} before ${percent(before)}.`;
}

export function renderHealth(health, history) {
  const banner = byId("health");
  banner.classList.toggle("degraded", health.status === "degraded");
  banner.dataset.status = health.status;
  setText(byId("health-badge"), health.status);
  const summary = health.freshness_summary;
  setText(
    byId("health-summary"),
    `${summary.total_monitored} pairs of ${health.total_symbols_monitored} symbols: ` +
      `${summary.fresh_count} fresh, ${summary.aging_count} aging, ${summary.stale_count} stale, ` +
      `${summary.missing_count} missing; ${health.open_failures_count} open failures`,
  );
  byId("health-reasons").replaceChildren(...health.reasons.map((reason) => el("li", {}, reason)));
  const last = health.last_execution;
  setText(
    byId("last-execution"),
    last
      ? `Last execution ${last.status}, started ${when(last.started_at)}` +
          (last.completed_at ? `, finished ${age(last.completed_at)}` : ", still running") +
          `: ${last.successful_symbols} symbols ok, ${last.failed_symbols} failed.`
      : "No execution recorded yet.",
  );
  setText(byId("trend"), trendText(history.executions));
}

export function historySummary(history) {
  const runs = history.executions.slice(0, 50);
  const failed = runs.filter((r) => r.status === "failed").length;
  const partial = runs.filter((r) => r.status !== "failed" && r.failed_symbols > 0).length;
  return `${runs.length} execution${runs.length === 1 ? "" : "s"}: ${failed} failed (✕), ${partial} with failed symbols (!). ` +
    "Bars show the duration, the line the success rate.";
}

function errorCell(text) {
  return el("td", { className: "error" }, text ?? "");
}

export function renderFailures(report, onSelect) {
  setText(byId("failures-count"), `${report.total_open} open` + (report.total_open > report.failures.length ? `, newest ${report.failures.length} shown` : ""));
  const rows = report.failures.map((f) =>
    el(
      "tr",
      {},
      el("td", {}, el("button", { type: "button", className: "link", onclick: () => onSelect(f.symbol, f.timeframe) }, f.symbol)),
      el("td", {}, f.timeframe),
      errorCell(f.error),
      el("td", { className: "num" }, f.retry_count),
      el("td", { title: stamp(f.first_failed_at) }, age(f.first_failed_at)),
      el("td", { title: stamp(f.failed_at) }, age(f.failed_at)),
    ),
  );
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { className: "empty", colspan: 6 }, "No open failure.")));
  byId("failures").tBodies[0].replaceChildren(...rows);
}

function field(name, value) {
  return [el("dt", {}, name), el("dd", {}, value)];
}

export function renderDetail(detail) {
  const pair = detail.pair;
  setText(byId("detail-title"), `${pair.symbol} · ${pair.timeframe} (${pair.asset_class})`);
  const failure = pair.failure;
  byId("detail-fields").replaceChildren(
    ...field("shown as", pair.cell_status),
    ...field("freshness", pair.status),
    ...field("last computed", when(pair.last_computed_at)),
    ...field("staleness", pair.staleness_seconds === null ? "–" : `${pair.staleness_seconds} s`),
    ...field("data points", String(pair.data_point_count)),
    ...field("last bar", stamp(pair.last_bar_at)),
    ...(failure
      ? [...field("failing since", when(failure.first_failed_at)), ...field("retries", String(failure.retry_count)), ...field("error", failure.error)]
      : []),
  );
  const link = byId("detail-link");
  const url = detail.dagster_url;
  link.hidden = !(url && /^https?:\/\//.test(url));
  if (!link.hidden) link.href = url;
  const statuses = detail.status_rows.map((r) =>
    el("tr", {}, el("td", { title: stamp(r.started_at) }, age(r.started_at)), el("td", {}, r.status), el("td", { title: r.execution_id }, r.execution_status), el("td", { className: "num" }, seconds(r.duration_seconds)), el("td", { className: "num" }, r.records_processed), errorCell(r.error_message)),
  );
  if (statuses.length === 0) statuses.push(el("tr", {}, el("td", { className: "empty", colspan: 6 }, "No status row yet.")));
  byId("detail-statuses").tBodies[0].replaceChildren(...statuses);
  const failures = detail.failures.map((f) =>
    el("tr", {}, el("td", { title: stamp(f.failed_at) }, age(f.failed_at)), el("td", { title: stamp(f.first_failed_at) }, age(f.first_failed_at)), el("td", { className: "num" }, f.retry_count), el("td", {}, f.resolved ? `resolved ${age(f.resolved_at)}` : "open"), errorCell(f.error)),
  );
  if (failures.length === 0) failures.push(el("tr", {}, el("td", { className: "empty", colspan: 5 }, "No failure recorded.")));
  byId("detail-failures").tBodies[0].replaceChildren(...failures);
  byId("detail").hidden = false;
}
