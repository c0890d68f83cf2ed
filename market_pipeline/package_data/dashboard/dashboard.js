// The dashboard: reads the admin endpoints every data-poll-seconds (15 s unless the page URL
// says ?poll=<seconds>), pausable, and updates the page in place. Timings are User Timing
// entries: the mark "dashboard:first-render" and one measure "dashboard:update" per refresh.

import { ADMIN, AuthError, getJson, pairPath, token } from "./api.js";
import { renderHistory } from "./chart.js";
import { byId, el, setText } from "./dom.js";
import { HeatMap, STATUSES } from "./heatmap.js";
import { historySummary, renderDetail, renderFailures, renderHealth } from "./panels.js";

const body = document.body;
const pollMs = Math.max(250, Number(body.dataset.pollSeconds) * 1000 || 15000);
const tokenRequired = body.dataset.tokenRequired === "true";
const state = { paused: false, timer: null, running: false, again: false, updates: 0, selected: null, history: "" };
const heatmap = new HeatMap(byId("heatmap"), select);

function select(symbol, timeframe) {
  state.selected = { symbol, timeframe };
  heatmap.select(symbol, timeframe);
  refresh();
}

function closeDetail() {
  state.selected = null;
  heatmap.select(null);
  byId("detail").hidden = true;
}

function showCount([visible, total]) {
  setText(byId("map-count"), visible === total ? `${total} pairs` : `showing ${visible} of ${total} pairs`);
}

function buildFilters() {
  const box = byId("filter-status");
  for (const status of STATUSES) {
    const input = el("input", { type: "checkbox", value: status.id });
    input.checked = true;
    const sample = el("span", { className: `swatch s-${status.id}`, "aria-hidden": "true" });
    box.append(el("label", { title: status.hint }, input, " ", sample, ` ${status.label} = ${status.name}`));
  }
  box.addEventListener("change", () => {
    const shown = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    showCount(heatmap.setFilter({ shown }));
  });
  byId("filter-prefix").addEventListener("input", (event) => showCount(heatmap.setFilter({ prefix: event.target.value })));
}

function apply(health, pairs, history, failures, detail) {
  renderHealth(health, history);
  showCount(heatmap.update(pairs));
  const historyKey = JSON.stringify(history.executions);
  if (historyKey !== state.history) {
    renderHistory(byId("history-chart"), history.executions);
    setText(byId("history-summary"), historySummary(history));
    state.history = historyKey;
  }
  renderFailures(failures, select);
  if (detail && state.selected) renderDetail(detail);
}

async function refresh() {
  if (state.running) {
    state.again = true;
    return;
  }
  state.running = true;
  clearTimeout(state.timer);
  const started = performance.now();
  const wanted = state.selected;
  try {
    const answers = await Promise.all([
      getJson(`${ADMIN}/scheduler-health`),
      getJson(`${ADMIN}/dashboard/pairs`),
      getJson(`${ADMIN}/scheduler/execution-history?limit=50`),
      getJson(`${ADMIN}/dashboard/failures?limit=100`),
      wanted ? getJson(pairPath(wanted.symbol, wanted.timeframe)) : null,
    ]);
    if (wanted !== state.selected) answers[4] = null;
    apply(...answers);
    state.updates += 1;
    body.dataset.updates = String(state.updates);
    performance.measure("dashboard:update", { start: started, end: performance.now() });
    if (state.updates === 1) performance.mark("dashboard:first-render");
    setText(byId("updated"), `updated ${new Date().toLocaleTimeString()}${state.paused ? " · paused" : ""}`);
    byId("load-error").hidden = true;
  } catch (error) {
    if (error instanceof AuthError) {
      state.running = false;
      askToken("The token was refused: enter it again.");
      return;
    }
    byId("load-error").hidden = false;
    setText(byId("load-error"), `Could not update: ${error.message}`);
  }
  state.running = false;
  if (state.again) {
    state.again = false;
    refresh();
    return;
  }
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(refresh, pollMs);
}

function askToken(message) {
  token.clear();
  clearTimeout(state.timer);
  byId("content").hidden = true;
  byId("token-form").hidden = false;
  setText(byId("token-message"), message);
  setText(byId("updated"), "waiting for the admin token");
  byId("token-input").focus();
}

function start() {
  byId("token-form").hidden = true;
  byId("content").hidden = false;
  refresh();
}

function wire() {
  buildFilters();
  byId("pause").addEventListener("click", (event) => {
    state.paused = !state.paused;
    event.target.setAttribute("aria-pressed", String(state.paused));
    setText(event.target, state.paused ? "Resume updates" : "Pause updates");
    setText(byId("updated"), state.paused ? "paused" : "resuming…");
    if (state.paused) clearTimeout(state.timer);
    else refresh();
  });
  byId("refresh").addEventListener("click", () => refresh());
  byId("detail-close").addEventListener("click", closeDetail);
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = byId("token-input").value.trim();
    if (!value) return;
    token.set(value);
    byId("token-input").value = "";
    start();
  });
}

wire();
if (tokenRequired && !token.get()) askToken("");
else start();
