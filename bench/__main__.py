"""``python -m bench [--smoke] [--only NAME ...]``: run the benchmark cases, print one table and
write ``bench/results/latest.json``.

Every figure is compared with a baseline measured in the same invocation on the same machine;
``--smoke`` runs tiny sizes (well under a minute) so CI keeps the suite from rotting. Smoke
figures mean nothing and carry ``"smoke": true`` in the machine record.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import LATEST_JSON, Result, format_table, write_json

CASES = (
    "store_ops",
    "backfill",
    "scale_out",
    "demo_sqlite",
    "write_path",
    "features",
    "mirror",
    "api",
    "metrics",
    "dashboard",
    "data_lag",
    "vendors",
    "scale_curve",
)
"""Case modules of this package, in the order they run; each has ``run(smoke) -> [Result]``."""


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases; exit status 1 when a case crashed (its figures are then absent)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=CASES,
        metavar="NAME",
        help=f"run only these cases (of {', '.join(CASES)})",
    )
    parser.add_argument("--output", type=Path, default=LATEST_JSON, help="results JSON file")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the records of cases not run now from the existing output file (to re-run "
        "one case after a crash; each record keeps its own machine record and time)",
    )
    args = parser.parse_args(argv)

    results: list[Result] = []
    failed: list[str] = []
    for name in args.only or CASES:
        print(f"[bench] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.cases.{name}")
            for result in module.run(smoke=args.smoke):
                result.case = name
                results.append(result)
        except Exception:  # noqa: BLE001 - report the crash, keep the other cases' figures
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    ran = set(args.only or CASES) - set(failed)
    kept = []
    if args.merge and args.output.is_file():
        kept = [r for r in json.loads(args.output.read_text()) if r.get("case") not in ran]
    path = write_json(results, args.output, smoke=args.smoke, keep=kept)
    print()
    print(format_table(results))
    print(f"\nwrote {path}")
    if failed:
        print(f"FAILED cases: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
