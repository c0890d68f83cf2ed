"""The scheduler health report as text (terminal) and Markdown (Dagster UI)."""

from __future__ import annotations

from datetime import datetime

from market_pipeline.domain.reports import (
    FreshnessItem,
    SchedulerHealth,
    SchedulerReport,
    StalenessReport,
)

_MOST_URGENT_FIRST = ("missing", "stale", "aging")
_ERROR_CHARS = 120


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"
    return f"{whole // 86400}d{(whole % 86400) // 3600:02d}h"


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows
    ]


def _health_lines(health: SchedulerHealth, h1: str) -> list[str]:
    lines = [
        f"{h1}Scheduler health: {health.status.upper()} (as of {_ts(health.timestamp)})",
        "",
    ]
    lines += [f"- degraded because: {reason}" for reason in health.reasons]
    last = health.last_execution
    if last:
        lines.append(
            f"- last execution {last.execution_id}: {last.status}, started "
            f"{_ts(last.started_at)}, {last.successful_symbols} symbols ok, "
            f"{last.failed_symbols} failed"
        )
    else:
        lines.append("- no execution recorded yet")
    lines.append(
        f"- symbols monitored: {health.total_symbols_monitored}, stale features: "
        f"{health.stale_features_count}"
    )
    lines += [
        f"- ALERT {a.symbol}/{a.timeframe} failed {a.consecutive_failures} times in a row: "
        f"{a.error}"
        for a in health.alerts
    ]
    return lines


def _freshness_lines(staleness: StalenessReport, h1: str, markdown: bool) -> list[str]:
    s = staleness.summary
    lines = ["", f"{h1}Feature freshness"]
    counts = [s.fresh_count, s.aging_count, s.stale_count, s.missing_count, s.total_monitored]
    lines += _table(
        ["fresh", "aging", "stale", "missing", "total"], [[str(c) for c in counts]], markdown
    )
    worst: list[FreshnessItem] = [
        item for status in _MOST_URGENT_FIRST for item in getattr(staleness.by_status, status)
    ]
    if worst:
        lines += ["", "Not fresh (most urgent first):"]
        lines += _table(
            ["symbol", "timeframe", "status", "age", "last computed", "points"],
            [
                [
                    i.symbol,
                    i.timeframe,
                    i.status,
                    _age(i.staleness_seconds),
                    _ts(i.last_computed_at),
                    str(i.data_point_count),
                ]
                for i in worst
            ],
            markdown,
        )
    return lines


def _failure_lines(health: SchedulerHealth, h1: str, markdown: bool) -> list[str]:
    if not health.recent_failures:
        return []
    return [
        "",
        f"{h1}Open failures",
        *_table(
            ["symbol", "timeframe", "failed at", "error"],
            [
                [f.symbol, f.timeframe, _ts(f.failed_at), f.error[:_ERROR_CHARS]]
                for f in health.recent_failures
            ],
            markdown,
        ),
    ]


def _history_lines(report: SchedulerReport, h1: str, markdown: bool) -> list[str]:
    rows = [
        [
            e.execution_id[:8],
            _ts(e.started_at),
            e.status,
            f"{e.successful_symbols}/{e.total_symbols}",
            str(e.total_records_processed),
            "-" if e.duration_seconds is None else f"{e.duration_seconds:.1f}",
            "-" if e.success_rate is None else f"{e.success_rate:.1f}",
        ]
        for e in report.history.executions
    ]
    headers = ["execution", "started", "status", "ok/total", "records", "seconds", "success %"]
    return ["", f"{h1}Recent executions", *_table(headers, rows, markdown)]


def _data_time_lines(report: SchedulerReport, h1: str, markdown: bool) -> list[str]:
    """Data time: the counts, the pairs late beyond tolerance and the coverage SLI."""
    health, coverage = report.health, report.coverage
    data = health.data_summary
    if data is None:
        return []
    lines = ["", f"{h1}Data time (is the newest due bar stored?)"]
    lines += _table(
        ["current", "late", "beyond tolerance", "missing", "unknown"],
        [
            [
                str(data.current_count),
                str(data.late_count),
                str(data.late_beyond_tolerance_count),
                str(data.missing_count),
                str(data.unknown_count),
            ]
        ],
        markdown,
    )
    if health.late_pairs:
        lines += ["", "Late beyond tolerance (most lagging first):"]
        lines += _table(
            ["symbol", "timeframe", "last bar", "due", "bars behind", "lag"],
            [
                [
                    p.symbol,
                    p.timeframe,
                    _ts(p.last_bar_at),
                    _ts(p.expected_last_bar_at),
                    str(p.bars_behind),
                    _age(p.data_lag_seconds),
                ]
                for p in health.late_pairs
            ],
            markdown,
        )
    if coverage is not None:
        budget = coverage.error_budget_remaining
        lines += [
            "",
            f"Coverage SLI (objective {coverage.objective:.2%}; 30-day error budget left: "
            f"{'-' if budget is None else f'{budget:.1%}'}):",
        ]
        lines += _table(
            ["window", "samples", "SLI", "burn rate"],
            [
                [
                    w.window,
                    str(w.samples),
                    "-" if w.sli is None else f"{w.sli:.2%}",
                    "-" if w.burn_rate is None else f"{w.burn_rate:.2f}",
                ]
                for w in coverage.windows
            ],
            markdown,
        )
    return lines


def render(report: SchedulerReport, *, markdown: bool = False) -> str:
    """The report as readable text; ``markdown`` for the Dagster UI."""
    h1 = "## " if markdown else ""
    lines = _health_lines(report.health, h1)
    lines += _freshness_lines(report.staleness, h1, markdown)
    lines += _data_time_lines(report, h1, markdown)
    lines += _failure_lines(report.health, h1, markdown)
    lines += _history_lines(report, h1, markdown)
    return "\n".join(lines)


def render_text(report: SchedulerReport) -> str:
    """The report for a terminal."""
    return render(report, markdown=False)


def render_markdown(report: SchedulerReport) -> str:
    """The report as Markdown, for the Dagster UI."""
    return render(report, markdown=True)
