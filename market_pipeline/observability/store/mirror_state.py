"""What the run mirror reads back from our tables, and its watermark."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import mirror_watermark as watermark_t
from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.database.tables import symbol_computation_status as symbol_status_t
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.reports import Alert
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store import failure_batches
from market_pipeline.observability.store.checks import TERMINAL_STATUSES, check_count, check_key
from market_pipeline.observability.store.context import Pair, StoreContext


def failed_pairs_of(ctx: StoreContext, execution_id: str | uuid.UUID) -> set[Pair]:
    """Pairs with a ``failed`` status row in the execution: their failure is already logged
    (the mirror writes failures before status rows)."""
    s = symbol_status_t
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.c.symbol, s.c.timeframe).where(
                s.c.execution_id == canonical_uuid(execution_id), s.c.status == "failed"
            )
        ).all()
    return {(r.symbol, r.timeframe) for r in rows}


def alerts_for(ctx: StoreContext, pairs: Iterable[Pair]) -> list[Alert]:
    """Open failures among ``pairs`` that reached the alert threshold."""
    wanted = set(pairs)
    if not wanted:
        return []
    f = failures_t
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                f.c.symbol, f.c.timeframe, f.c.retry_count, f.c.error_message, f.c.failed_at
            ).where(
                sa.not_(f.c.resolved),
                f.c.retry_count + 1 >= ctx.failure_alert_threshold,
                f.c.symbol.in_(sorted({s for s, _ in wanted})),
            )
        ).all()
    return [
        Alert(
            symbol=r.symbol,
            timeframe=r.timeframe,
            consecutive_failures=r.retry_count + 1,
            error=r.error_message,
            failed_at=r.failed_at,
        )
        for r in rows
        if (r.symbol, r.timeframe) in wanted
    ]


def finished_executions(ctx: StoreContext, execution_ids: Iterable[str]) -> set[str]:
    """Those of ``execution_ids`` (as given) whose row is ``completed`` or ``failed``; ids that
    are not UUIDs are simply not found."""
    canonical: dict[str, str] = {}
    for given in execution_ids:
        try:
            canonical[canonical_uuid(given)] = given
        except ValueError:
            continue
    if not canonical:
        return set()
    e = executions_t
    with ctx.engine.connect() as conn:
        found = conn.execute(
            sa.select(e.c.execution_id).where(
                e.c.execution_id.in_(sorted(canonical)), e.c.status.in_(TERMINAL_STATUSES)
            )
        ).scalars()
        return {canonical[eid] for eid in found}


def watermark(ctx: StoreContext, name: str) -> datetime | None:
    """The run update time up to which mirror ``name`` projected every run; ``None`` before
    its first pass."""
    w = watermark_t
    with ctx.engine.connect() as conn:
        return conn.execute(sa.select(w.c.run_updated_at).where(w.c.name == name)).scalar()


def advance_watermark(ctx: StoreContext, name: str, value: datetime, mirrored: int) -> None:
    """Move mirror ``name``'s watermark to ``value`` (never backwards), counting ``mirrored``
    more runs."""
    w = watermark_t
    stmt = ctx.sql.insert(w).values(
        name=check_key(name, "name"),
        run_updated_at=ensure_utc(value, name="value"),
        runs_mirrored=check_count(mirrored, "mirrored"),
        updated_at=ctx.now(),
    )
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[w.c.name],
        set_={
            "run_updated_at": sa.case(
                (new.run_updated_at > w.c.run_updated_at, new.run_updated_at),
                else_=w.c.run_updated_at,
            ),
            "runs_mirrored": w.c.runs_mirrored + new.runs_mirrored,
            "updated_at": new.updated_at,
        },
    )
    with ctx.sql.write() as conn:
        conn.execute(stmt)


class MirrorState:
    """The run mirror's read-backs over one store (``store.mirror``)."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def failed_pairs_of(self, execution_id: str | uuid.UUID) -> set[Pair]:
        """Pairs whose failure in ``execution_id`` is already logged."""
        return failed_pairs_of(self._ctx, execution_id)

    def alerts_for(self, pairs: Iterable[Pair]) -> list[Alert]:
        """Open failures among ``pairs`` that reached the alert threshold."""
        return alerts_for(self._ctx, pairs)

    def log_failures(
        self, execution_id: str | uuid.UUID, failures: Iterable[Mapping[str, Any]]
    ) -> int:
        """The failures of many pairs in one execution, each as
        :meth:`~market_pipeline.observability.store.ObservabilityStore.log_feature_computation_failure`
        would log it, in one statement (see :mod:`.failure_batches`); return how many were
        written."""
        return failure_batches.log_many(self._ctx, execution_id, failures)

    def finished_executions(self, execution_ids: Iterable[str]) -> set[str]:
        """Those of ``execution_ids`` whose execution row is completed or failed."""
        return finished_executions(self._ctx, execution_ids)

    def watermark(self, name: str) -> datetime | None:
        """The run update time up to which mirror ``name`` projected every run."""
        return watermark(self._ctx, name)

    def advance_watermark(self, name: str, value: datetime, mirrored: int) -> None:
        """Move mirror ``name``'s watermark forward to ``value``."""
        advance_watermark(self._ctx, name, value, mirrored)
