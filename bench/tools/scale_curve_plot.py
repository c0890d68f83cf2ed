"""Plot the cost curve of ``python -m bench --only scale_curve`` and print its README table.

``python -m bench.tools.scale_curve_plot RESULTS.json --output PNG [--copy PNG ...]`` reads the
curve's points (the records whose ``extra`` has ``curve_point``) and draws seconds per partition
against partitions (log x), ours (first write and incremental) and Dagster's floor, per backend.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after choosing the backend

SERIES = (
    ("first", "ours, first write", "-", "o"),
    ("incremental", "ours, incremental (5 new bars)", "-", "s"),
    ("floor_with_checks", "Dagster floor with checks", "--", "^"),
    ("floor", "Dagster floor (empty body)", ":", "v"),
)
BACKENDS = {"postgresql": ("PostgreSQL", "tab:blue"), "sqlite": ("SQLite", "tab:orange")}


def curve_points(records: list[dict]) -> list[dict]:
    """The curve's points in ``records``, by backend then partitions."""
    points = [r["extra"] for r in records if r.get("extra", {}).get("curve_point")]
    if not points:
        raise ValueError("no scale_curve points in the results (run --only scale_curve first)")
    return sorted(points, key=lambda p: (p["backend"], p["partitions"]))


def plot(points: list[dict], output: Path) -> None:
    """Draw seconds per partition against partitions, one panel per backend."""
    backends = [b for b in BACKENDS if any(p["backend"] == b for p in points)]
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), squeeze=False)
    for axis, backend in zip(axes[0], backends, strict=True):
        label, colour = BACKENDS[backend]
        mine = [p for p in points if p["backend"] == backend]
        xs = [p["partitions"] for p in mine]
        for step, name, style, marker in SERIES:
            ys = [p["seconds_per_partition"][step] * 1e3 for p in mine]
            grey = step.startswith("floor")
            axis.plot(
                xs,
                ys,
                linestyle=style,
                marker=marker,
                color="grey" if grey else colour,
                alpha=0.9 if not grey or step == "floor_with_checks" else 0.6,
                label=name,
            )
        axis.set_xscale("log")
        axis.set_xticks(xs, [f"{x:,}" for x in xs])
        axis.minorticks_off()
        axis.set_ylim(bottom=0)
        axis.set_xlabel("partitions (symbols x timeframes), runs of at most 250")
        axis.set_ylabel("ms per partition")
        axis.set_title(f"Backfill cost per partition, {label}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def markdown_table(points: list[dict]) -> str:
    """The README table: per size and backend, ms per partition and peak RSS of each step."""
    lines = [
        "| partitions | backend | ours first write | ours incremental | floor | floor with "
        "checks | peak RSS first / incremental / floor |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        ms = {k: v * 1e3 for k, v in p["seconds_per_partition"].items()}
        rss = p["peak_rss_mb"]
        lines.append(
            f"| {p['partitions']:,} | {BACKENDS[p['backend']][0]} | {ms['first']:.1f} ms "
            f"({p['seconds']['first']:.1f} s) | {ms['incremental']:.1f} ms "
            f"({p['seconds']['incremental']:.1f} s) | {ms['floor']:.1f} ms | "
            f"{ms['floor_with_checks']:.1f} ms | {rss['first']:.0f} / {rss['incremental']:.0f} / "
            f"{rss['floor']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="JSON written by python -m bench")
    parser.add_argument("--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--copy", type=Path, nargs="*", default=[], help="more copies of it")
    args = parser.parse_args(argv)
    points = curve_points(json.loads(args.results.read_text()))
    plot(points, args.output)
    for copy in args.copy:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.output, copy)
    print(markdown_table(points))
    print(f"\nwrote {', '.join(str(p) for p in [args.output, *args.copy])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
