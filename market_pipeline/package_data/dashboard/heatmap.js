// The heat map: symbols (rows) by timeframes (columns), one table per asset class. Built once
// per set of pairs, then updated in place: a cell's class, label and title change only when its
// status or text does, so a 1,000-pair update touches only what moved.

import { el, setText } from "./dom.js";
import { stamp } from "./format.js";

// Worst first: the order of the filter boxes. Each status has a text label besides its colour.
export const STATUSES = [
  { id: "failed", label: "FAIL", name: "failed", hint: "open failure" },
  { id: "late", label: "late", name: "late", hint: "newest due bar missing beyond tolerance" },
  { id: "stale", label: "stale", name: "stale", hint: "24 h or older" },
  { id: "aging", label: "aging", name: "aging", hint: "1 to 24 h" },
  { id: "missing", label: "miss", name: "missing", hint: "never computed" },
  { id: "fresh", label: "ok", name: "fresh", hint: "under 1 h" },
];
const BY_ID = Object.fromEntries(STATUSES.map((s) => [s.id, s]));
const CLASS_ORDER = ["equity", "crypto", "fx"];
const MAX_TITLE_ERROR = 300;

const keyOf = (symbol, timeframe) => `${symbol}|${timeframe}`;

function describe(pair) {
  const status = BY_ID[pair.cell_status];
  const parts = [`${pair.symbol} ${pair.timeframe}: ${status.name} (${status.hint})`];
  parts.push(`freshness ${pair.status}, last computed ${stamp(pair.last_computed_at)}`);
  if (pair.data_status) {
    const behind = pair.bars_behind ? `, ${pair.bars_behind} bar(s) behind` : "";
    parts.push(`data ${pair.data_status}: newest bar ${stamp(pair.last_bar_at)}, due ${stamp(pair.expected_last_bar_at)}${behind}`);
  }
  if (pair.failure) {
    const error = pair.failure.error;
    const shown = error.length > MAX_TITLE_ERROR ? `${error.slice(0, MAX_TITLE_ERROR)}…` : error;
    parts.push(`failing since ${stamp(pair.failure.first_failed_at)}, ${pair.failure.retry_count} retries: ${shown}`);
  }
  return parts.join("\n");
}

function classRank(name) {
  const rank = CLASS_ORDER.indexOf(name);
  return rank < 0 ? CLASS_ORDER.length : rank;
}

export class HeatMap {
  constructor(root, onSelect) {
    this.root = root;
    this.cells = new Map();
    this.rows = [];
    this.groups = [];
    this.signature = "";
    this.prefix = "";
    this.shown = new Set(STATUSES.map((s) => s.id));
    this.selected = null;
    root.addEventListener("click", (event) => {
      const button = event.target.closest("button.cell");
      if (button) onSelect(button.dataset.symbol, button.dataset.timeframe);
    });
  }

  update(report) {
    const signature = `${report.timeframes.join(",")}#${report.pairs
      .map((p) => `${p.asset_class}:${p.symbol}|${p.timeframe}`)
      .join(",")}`;
    if (signature !== this.signature) {
      this.build(report);
      this.signature = signature;
    }
    for (const pair of report.pairs) this.paint(this.cells.get(keyOf(pair.symbol, pair.timeframe)), pair);
    return this.applyFilter();
  }

  build(report) {
    const classes = new Map();
    for (const pair of report.pairs) {
      if (!classes.has(pair.asset_class)) classes.set(pair.asset_class, new Map());
      const symbols = classes.get(pair.asset_class);
      if (!symbols.has(pair.symbol)) symbols.set(pair.symbol, new Set());
      symbols.get(pair.symbol).add(pair.timeframe);
    }
    const names = [...classes.keys()].sort((a, b) => classRank(a) - classRank(b) || a.localeCompare(b));
    this.cells = new Map();
    this.rows = [];
    this.groups = names.map((name) => this.buildGroup(name, classes.get(name), report.timeframes));
    this.root.replaceChildren(...this.groups.map((g) => g.details));
    if (this.selected) this.select(this.selected.symbol, this.selected.timeframe);
  }

  buildGroup(name, symbols, timeframes) {
    const head = el("tr", {}, el("th", { scope: "col" }, "symbol"), timeframes.map((tf) => el("th", { scope: "col" }, tf)));
    const body = el("tbody");
    const group = { name, details: null, summary: el("summary"), rows: [] };
    for (const [symbol, present] of symbols) {
      const tr = el("tr", {}, el("th", { scope: "row" }, symbol));
      const row = { tr, symbol: symbol.toUpperCase(), cells: [] };
      for (const tf of timeframes) {
        const td = el("td");
        if (present.has(tf)) {
          const button = el("button", { type: "button", className: "cell", dataset: { symbol, timeframe: tf } });
          const cell = { button, status: null, title: null };
          this.cells.set(keyOf(symbol, tf), cell);
          row.cells.push(cell);
          td.append(button);
        }
        tr.append(td);
      }
      body.append(tr);
      group.rows.push(row);
      this.rows.push(row);
    }
    const table = el("table", { className: "heatmap" }, el("thead", {}, head), body);
    group.details = el("details", { className: "group", open: "" }, group.summary, table);
    group.details.dataset.assetClass = name;
    return group;
  }

  paint(cell, pair) {
    if (cell.status !== pair.cell_status) {
      const selected = cell.button.classList.contains("selected") ? " selected" : "";
      cell.button.className = `cell s-${pair.cell_status}${selected}`;
      cell.button.dataset.status = pair.cell_status;
      cell.button.textContent = BY_ID[pair.cell_status].label;
      cell.status = pair.cell_status;
    }
    const title = describe(pair);
    if (cell.title !== title) {
      cell.button.title = title;
      cell.button.setAttribute("aria-label", title);
      cell.title = title;
    }
  }

  setFilter({ prefix, shown }) {
    if (prefix !== undefined) this.prefix = prefix.trim().toUpperCase();
    if (shown !== undefined) this.shown = shown;
    return this.applyFilter();
  }

  // Hides cells whose status is not shown and rows whose symbol does not start with the
  // prefix; returns [visible cells, all cells].
  applyFilter() {
    let visible = 0;
    for (const group of this.groups) {
      let groupVisible = 0;
      const counts = Object.fromEntries(STATUSES.map((s) => [s.id, 0]));
      for (const row of group.rows) {
        const matches = row.symbol.startsWith(this.prefix);
        let rowVisible = 0;
        for (const cell of row.cells) {
          counts[cell.status] += 1;
          const show = matches && this.shown.has(cell.status);
          if (cell.button.hidden === show) cell.button.hidden = !show;
          if (show) rowVisible += 1;
        }
        if (row.tr.hidden === rowVisible > 0) row.tr.hidden = rowVisible === 0;
        groupVisible += rowVisible;
      }
      group.details.hidden = groupVisible === 0;
      const worst = STATUSES.filter((s) => s.id !== "fresh" && counts[s.id] > 0)
        .map((s) => `${counts[s.id]} ${s.name}`)
        .join(", ");
      setText(group.summary, `${group.name}: ${group.rows.length} symbol${group.rows.length === 1 ? "" : "s"}${worst ? ` (${worst})` : ", all fresh"}`);
      visible += groupVisible;
    }
    return [visible, this.cells.size];
  }

  select(symbol, timeframe) {
    if (this.selected) this.cells.get(keyOf(this.selected.symbol, this.selected.timeframe))?.button.classList.remove("selected");
    this.selected = symbol === null ? null : { symbol, timeframe };
    if (this.selected) this.cells.get(keyOf(symbol, timeframe))?.button.classList.add("selected");
  }
}
