"""A screenshot of the dashboard over the store the current settings name (``make screenshot``).

``make screenshot`` runs ``market-pipeline demo`` and then this::

    python -m bench.tools.dashboard_screenshot --output docs/dashboard.png

It starts ``market-pipeline serve`` on a free loopback port with this process's environment (so
the same ``MARKET_PIPELINE_*`` settings), opens ``/dashboard`` in Debian's Chromium, waits for the
first full render and writes a full-page PNG. The README embeds ``docs/dashboard.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from market_pipeline_tests.support.browser import launch_chromium, serving

VIEWPORT = {"width": 1400, "height": 900}


def take(url: str, output: Path) -> None:
    """Load the dashboard at ``url`` and write a full-page screenshot to ``output``."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{url}/dashboard")
            page.wait_for_selector("body[data-updates]", timeout=30_000)
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "MARKET_PIPELINE_ADMIN_TOKEN"}
    log = Path(tempfile.mkdtemp(prefix="mp_screenshot_")) / "serve.log"
    with serving(env, log) as url:
        take(url, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
