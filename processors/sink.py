"""The database sink: batched, idempotent upserts of indicator values.

Each row is keyed by (indicator, scope, breakdown, period type, period end); writing the same
row twice leaves the table as writing it once, so replays and retries never double count.
A batch is one transaction. On a database outage the sink retries with capped backoff and does
not return until the rows are durable, so the calling agent does not move past records whose
effects are not yet written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date, datetime

import psycopg

from processors.core import IndicatorValue
from processors.db import redact_url

log = logging.getLogger(__name__)

UPSERT_INDICATORS = """
INSERT INTO indicator_values (indicator_id, scope_type, scope_code, breakdown, period_type,
    period_start, period_end, value, numerator, denominator, n, suppressed, computed_at)
VALUES (%s, %s, %s, 'all', %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (indicator_id, scope_type, scope_code, breakdown, period_type, period_end)
DO UPDATE SET period_start = EXCLUDED.period_start, value = EXCLUDED.value,
    numerator = EXCLUDED.numerator, denominator = EXCLUDED.denominator, n = EXCLUDED.n,
    suppressed = EXCLUDED.suppressed, computed_at = EXCLUDED.computed_at
"""

UPSERT_OFFICIAL = """
INSERT INTO official_deaths (region_code, month, deaths, source, published_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (region_code, month) DO UPDATE SET deaths = EXCLUDED.deaths,
    source = EXCLUDED.source, published_at = EXCLUDED.published_at
"""

OfficialRow = tuple[str, date, int, str, datetime]


def indicator_params(v: IndicatorValue) -> tuple[object, ...]:
    return (
        v.indicator_id,
        v.scope_type,
        v.scope_code,
        v.period_type,
        v.period_start,
        v.period_end,
        v.value,
        v.numerator,
        v.denominator,
        v.n,
        v.suppressed,
    )


class IndicatorSink:
    def __init__(self, database_url: str, max_backoff_s: float = 10.0) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection | None = None
        self._max_backoff_s = max_backoff_s
        self.rows_written = 0
        self.retries = 0

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
        return self._conn

    async def write(
        self, values: Sequence[IndicatorValue], official: Sequence[OfficialRow] = ()
    ) -> None:
        if not values and not official:
            return
        # Deterministic order keeps two workers' concurrent upserts from deadlocking.
        rows = sorted(
            (indicator_params(v) for v in values), key=lambda p: (p[0], p[1], p[2], p[3], p[5])
        )
        backoff = 0.5
        while True:
            try:
                conn = await self._connection()
                async with conn.transaction(), conn.cursor() as cur:
                    if official:
                        await cur.executemany(UPSERT_OFFICIAL, sorted(official))
                    if rows:
                        await cur.executemany(UPSERT_INDICATORS, rows)
                self.rows_written += len(rows)
                return
            except psycopg.OperationalError as e:
                self.retries += 1
                log.error(
                    "database write failed at %s (%s); retrying in %.1fs - check that "
                    "PostgreSQL is up (`palliwatch services status`)",
                    redact_url(self._url),
                    e.__class__.__name__,
                    backoff,
                )
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
