"""The freshness sensor's choice of which bars_current_check results to report between runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from market_pipeline.defs.data_lag_check import MAX_CHANGES_PER_TICK, changed_statuses
from market_pipeline.domain.data_lag import DataLag

DUE = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
OLD = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
NEWER = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


def current(last=DUE) -> DataLag:
    return DataLag(last, DUE, 0, 0.0, "current")


def late(last) -> DataLag:
    return DataLag(last, DUE, 3, 600.0, "late")


def test_only_changes_are_reported_and_the_cursor_remembers_them():
    changed, cursor = changed_statuses({("A", "1h"): late(OLD), ("B", "1h"): current()}, None)
    assert [pair for pair, _ in changed] == [("A", "1h")]
    again, cursor = changed_statuses({("A", "1h"): late(OLD), ("B", "1h"): current()}, cursor)
    assert again == []
    recovered, cursor = changed_statuses({("A", "1h"): current(), ("B", "1h"): current()}, cursor)
    assert [pair for pair, _ in recovered] == [("A", "1h")]
    assert json.loads(cursor) == {}


def test_a_pair_that_stalls_again_after_a_run_is_reported_again():
    _, cursor = changed_statuses({("A", "1h"): late(OLD)}, None)
    # A run stored the 15:30 bar (and reported the check passed); the vendor stalls on it.
    changed, cursor = changed_statuses({("A", "1h"): late(NEWER)}, cursor)
    assert [lag.last_bar_at for _, lag in changed] == [NEWER]
    assert json.loads(cursor) == {"A|1h": "late@2026-11-27T15:30:00Z"}


def test_pairs_that_left_the_universe_leave_the_cursor_and_a_tick_is_bounded():
    cursor = json.dumps({"GONE|1d": "late@2026-11-26T00:00:00Z"})
    lags = {(f"S{i}", "1h"): late(OLD) for i in range(MAX_CHANGES_PER_TICK + 5)}
    changed, cursor = changed_statuses(lags, cursor)
    assert len(changed) == MAX_CHANGES_PER_TICK
    remembered = json.loads(cursor)
    assert "GONE|1d" not in remembered and len(remembered) == MAX_CHANGES_PER_TICK
    rest, _ = changed_statuses(lags, cursor)
    assert len(rest) == 5  # the next tick reports the others
