"""How the sink treats each kind of database error, on the real local PostgreSQL.

Retried, bounded and counted: an outage, a server that turned read-only (a failover), a
statement cancelled by statement_timeout. Rejected, never retried: rows the database refuses (a
NUL in a text column): write_records names the records, the rest of the batch is durable. Raised,
never retried: a configured limit exceeded (53400; on a real TimescaleDB server in
tests/test_timescale.py).
"""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from processors import metrics
from processors.sink import DatabaseGaveUp, DatabaseLimitExceeded, Sink, error_kind
from schemas.models import DeathSurvey
from tests.conftest import Isolated
from tests.keys import KEYS
from tests.pipeline_helpers import person, survey

pytestmark = pytest.mark.integration


def _survey(sid: str, **changes: object) -> DeathSurvey:
    s = DeathSurvey.model_validate(
        {
            **survey(sid, person(sid), submitted_at="2026-01-20T10:00:00Z"),
            "date_of_death": "2026-01-10",
        }
    )
    return s.model_copy(update=changes) if changes else s


def _errors(kind: str) -> float:
    return metrics.DATABASE_ERRORS.labels(kind)._value.get()


def _stored(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT survey_id FROM surveys")}


def test_rows_the_database_refuses_are_named_and_the_rest_is_durable(isolated: Isolated) -> None:
    s = isolated.settings
    good = [_survey(f"sink-ok-{i}") for i in range(3)]
    # Validation rejects NUL (unstorable_character); a record that got past it anyway must not
    # stop the batch or be retried forever.
    bad = _survey("sink-bad", unit_id="unit\x00")
    sink = Sink(s.database_url, record_keys=KEYS)
    before = _errors("rejected")

    async def go() -> list[tuple[int, str]]:
        try:
            return await sink.write_records([good[0], bad, good[1], good[2]])
        finally:
            await sink.close()

    rejected = asyncio.run(go())
    assert [i for i, _ in rejected] == [1]
    assert "CharacterNotInRepertoire" in rejected[0][1] or "0x00" in rejected[0][1]
    assert _stored(s.database_url) == {g.survey_id for g in good}
    assert _errors("rejected") > before


def test_a_read_only_database_is_retried_until_it_is_writable_again(isolated: Isolated) -> None:
    s = isolated.settings
    admin = s.owner_url  # the database's owner may make it read-only
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{isolated.db_name}" SET default_transaction_read_only = on')
    before = _errors("read_only")

    def writable_again() -> None:
        deadline = time.monotonic() + 30
        while _errors("read_only") == before and time.monotonic() < deadline:
            time.sleep(0.1)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f'ALTER DATABASE "{isolated.db_name}" RESET default_transaction_read_only')

    flip = threading.Thread(target=writable_again)
    flip.start()
    sink = Sink(s.database_url, max_backoff_s=0.5, record_keys=KEYS)

    async def go() -> None:
        try:
            await sink.write_records([_survey("sink-ro")])
        finally:
            await sink.close()

    asyncio.run(go())
    flip.join()
    assert _errors("read_only") > before
    assert _stored(s.database_url) == {"sink-ro"}


def test_a_statement_that_hangs_is_cancelled_and_retried(isolated: Isolated) -> None:
    s = isolated.settings
    before = _errors("timeout")
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(s.database_url) as conn:
            conn.execute("LOCK TABLE surveys IN ACCESS EXCLUSIVE MODE")
            locked.set()
            deadline = time.monotonic() + 30
            while _errors("timeout") == before and time.monotonic() < deadline:
                time.sleep(0.1)
            conn.rollback()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    sink = Sink(s.database_url, max_backoff_s=0.5, statement_timeout_s=0.5, record_keys=KEYS)

    async def go() -> None:
        try:
            await sink.write_records([_survey("sink-slow")])
        finally:
            await sink.close()

    asyncio.run(go())
    holder.join()
    assert _errors("timeout") > before
    assert _stored(s.database_url) == {"sink-slow"}


def test_an_outage_longer_than_the_bound_gives_up_naming_the_fix() -> None:
    sink = Sink(
        "postgresql://nobody:x@127.0.0.1:9/none",
        max_backoff_s=0.2,
        give_up_after_s=1.0,
        record_keys=KEYS,
    )
    started = time.monotonic()

    async def go() -> None:
        await sink.write_records([_survey("sink-never")])

    with pytest.raises(DatabaseGaveUp, match="palliwatch services status") as e:
        asyncio.run(go())
    assert "x@" not in str(e.value)  # the password is never shown
    assert 1.0 <= time.monotonic() - started < 10


def test_a_configured_limit_exceeded_is_raised_at_once_not_retried_as_an_outage(
    isolated: Isolated,
) -> None:
    """SQLSTATE 53400 is an OperationalError to psycopg, but the same write exceeds the same
    limit every time: the sink raises (the worker stops, saying what to raise) instead of
    retrying it for give_up_after_s as if the database were down. The server raises the real
    error here from a trigger; TimescaleDB's decompression cap is in tests/test_timescale.py."""
    s = isolated.settings
    with psycopg.connect(s.owner_url, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION over_limit() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   RAISE EXCEPTION 'temporary file size exceeds temp_file_limit (1024kB)'
                       USING ERRCODE = 'configuration_limit_exceeded';
               END $$"""
        )
        conn.execute(
            "CREATE TRIGGER over_limit BEFORE INSERT ON surveys "
            "FOR EACH STATEMENT EXECUTE FUNCTION over_limit()"
        )
    retries = metrics.SINK_RETRIES._value.get()
    before = _errors("limit")
    sink = Sink(s.database_url, max_backoff_s=0.2, give_up_after_s=600, record_keys=KEYS)
    started = time.monotonic()

    async def go() -> None:
        try:
            await sink.write_records([_survey("sink-limit")])
        finally:
            await sink.close()

    with pytest.raises(DatabaseLimitExceeded, match="temp_file_limit") as e:
        asyncio.run(go())
    assert "53400" in str(e.value) and "Retrying cannot help" in str(e.value)
    assert time.monotonic() - started < 10
    assert metrics.SINK_RETRIES._value.get() == retries
    assert _errors("limit") == before + 1
    assert _stored(s.database_url) == set()


def test_error_kinds() -> None:
    errors = psycopg.errors
    assert error_kind(errors.QueryCanceled()) == "timeout"
    assert error_kind(errors.ReadOnlySqlTransaction()) == "read_only"
    assert error_kind(errors.AdminShutdown()) == "outage"
    assert error_kind(errors.SerializationFailure()) == "outage"
    assert error_kind(psycopg.OperationalError()) == "outage"
    assert error_kind(errors.CharacterNotInRepertoire()) == "rejected"
    assert error_kind(errors.UniqueViolation()) == "rejected"
    assert error_kind(errors.UndefinedTable()) == "fatal"
    assert error_kind(errors.InternalError_()) == "fatal"
    # An OperationalError by class, but no outage (TimescaleDB's decompression cap, limits).
    assert isinstance(errors.ConfigurationLimitExceeded(), psycopg.OperationalError)
    assert error_kind(errors.ConfigurationLimitExceeded()) == "limit"
