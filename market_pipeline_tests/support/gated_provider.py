"""A synthetic provider a test can hold inside a run: kind ``gated_synthetic``.

Importing this module registers the kind; every process of a test (the test, the CLI it runs,
the daemon, Celery workers) imports it through the test's code location. While ``hold_file``
exists, ``fetch_bars`` touches ``entered_file`` and waits (at most
:data:`HOLD_MAX_S`): the run is then in the middle of its step, with its pairs locked, which is
when the test strikes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from market_pipeline.providers.base import register_provider
from market_pipeline.providers.synthetic import DEFAULT_HISTORY_BARS, SyntheticProvider

HOLD_MAX_S = 120.0


@register_provider
class GatedSyntheticProvider(SyntheticProvider):
    kind = "gated_synthetic"

    def __init__(
        self,
        *,
        hold_file: str,
        entered_file: str,
        history_bars: int = DEFAULT_HISTORY_BARS,
        seed: int = 0,
        fail_symbols: Iterable[str] = (),
        bad_row_symbols: Iterable[str] = (),
    ) -> None:
        super().__init__(
            history_bars=history_bars,
            seed=seed,
            fail_symbols=fail_symbols,
            bad_row_symbols=bad_row_symbols,
        )
        self.hold_file, self.entered_file = Path(hold_file), Path(entered_file)
        self._config = {
            **self._config,
            "kind": self.kind,
            "hold_file": hold_file,
            "entered_file": entered_file,
        }

    def fetch_bars(self, symbol, asset_class, timeframe, *, since, until):
        if self.hold_file.exists():
            self.entered_file.touch()
            deadline = time.monotonic() + HOLD_MAX_S
            while self.hold_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().fetch_bars(symbol, asset_class, timeframe, since=since, until=until)
