"""The scheduler health report as text (terminal) and Markdown (Dagster UI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

STATUSES = ("fresh", "aging", "stale", "missing")


def build_report(store, *, staleness_limit: int = 20, history_limit: int = 10) -> dict[str, Any]:
    """Health, staleness and history from an ObservabilityStore, read at the same moment."""
    return {
        "health": store.get_scheduler_health(),
        "staleness": store.get_feature_staleness_report(limit=staleness_limit),
        "history": store.get_execution_history(limit=history_limit),
    }


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return lines
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows
    ]


def render(report: dict[str, Any], *, markdown: bool = False) -> str:
    """The report as readable text; ``markdown`` for the Dagster UI."""
    health, staleness, history = report["health"], report["staleness"], report["history"]
    h1 = "## " if markdown else ""
    lines = [
        f"{h1}Scheduler health: {health['status'].upper()} (as of {_ts(health['timestamp'])})",
        "",
    ]
    for reason in health.get("reasons", []):
        lines.append(f"- degraded because: {reason}")
    last = health.get("last_execution")
    if last:
        lines.append(
            f"- last execution {last['execution_id']}: {last['status']}, started "
            f"{_ts(last['started_at'])}, {last['successful_symbols']} symbols ok, "
            f"{last['failed_symbols']} failed"
        )
    else:
        lines.append("- no execution recorded yet")
    lines.append(
        f"- symbols monitored: {health['total_symbols_monitored']}, stale features: "
        f"{health['stale_features_count']}"
    )
    for alert in health.get("alerts", []):
        lines.append(
            f"- ALERT {alert['symbol']}/{alert['timeframe']} failed "
            f"{alert['consecutive_failures']} times in a row: {alert['error']}"
        )
    summary = staleness["summary"]
    lines += ["", f"{h1}Feature freshness"]
    lines += _table(
        ["fresh", "aging", "stale", "missing", "total"],
        [[str(summary[f"{s}_count"]) for s in STATUSES] + [str(summary["total_monitored"])]],
        markdown,
    )
    worst = [item for s in ("missing", "stale", "aging") for item in staleness["by_status"][s]]
    if worst:
        lines += ["", "Not fresh (most urgent first):"]
        lines += _table(
            ["symbol", "timeframe", "status", "age", "last computed", "points"],
            [
                [i["symbol"], i["timeframe"], i["status"], _age(i["staleness_seconds"]),
                 _ts(i["last_computed_at"]), str(i["data_point_count"])]
                for i in worst
            ],
            markdown,
        )
    failures = health.get("recent_failures", [])
    if failures:
        lines += ["", f"{h1}Open failures"]
        lines += _table(
            ["symbol", "timeframe", "failed at", "error"],
            [[f["symbol"], f["timeframe"], _ts(f["failed_at"]), f["error"][:120]]
             for f in failures],
            markdown,
        )
    lines += ["", f"{h1}Recent executions"]
    lines += _table(
        ["execution", "started", "status", "ok/total", "records", "seconds", "success %"],
        [
            [e["execution_id"][:8], _ts(e["started_at"]), e["status"],
             f"{e['successful_symbols']}/{e['total_symbols']}", str(e["total_records_processed"]),
             "-" if e["duration_seconds"] is None else f"{e['duration_seconds']:.1f}",
             "-" if e["success_rate"] is None else f"{e['success_rate']:.1f}"]
            for e in history["executions"]
        ],
        markdown,
    )
    return "\n".join(lines)


def render_text(report: dict[str, Any]) -> str:
    return render(report, markdown=False)


def render_markdown(report: dict[str, Any]) -> str:
    return render(report, markdown=True)
