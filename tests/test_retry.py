"""The retry policies (processors/retry.py): each retries only its own kind of error, and
stops where it says."""

from __future__ import annotations

import asyncio
import time

import pytest

from processors import retry


class Retriable(Exception):
    retriable = True


class Final(Exception):
    retriable = False


def test_wait_until_true_false_and_raising() -> None:
    calls = iter([False, False, True])
    assert retry.wait_until(lambda: next(calls), timeout_s=5, interval_s=0.01)
    started = time.monotonic()
    assert not retry.wait_until(lambda: False, timeout_s=0.3, interval_s=0.05)
    assert 0.3 <= time.monotonic() - started < 2
    with pytest.raises(ZeroDivisionError):  # an exception stops the wait at once
        retry.wait_until(lambda: bool(1 / 0), timeout_s=5, interval_s=0.01)


def test_contention_retries_only_what_it_names() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Retriable("tuple concurrently updated")
        return "done"

    policy = retry.database_contention(
        Retriable, attempts=5, step_s=0.001, when=lambda e: "concurrently" in str(e)
    )
    assert policy(flaky) == "done" and len(attempts) == 3

    attempts.clear()
    with pytest.raises(Retriable, match="something else"):  # the right type, not the case
        policy(lambda: attempts.append(1) or (_ for _ in ()).throw(Retriable("something else")))
    assert len(attempts) == 1
    with pytest.raises(Final):  # another type: at once
        policy(lambda: (_ for _ in ()).throw(Final("tuple concurrently")))


def test_contention_gives_up_after_its_attempts() -> None:
    attempts: list[int] = []

    def always() -> None:
        attempts.append(1)
        raise Retriable("tuple concurrently deleted")

    with pytest.raises(Retriable):
        retry.database_contention(Retriable, attempts=4, step_s=0.001, when=lambda e: True)(always)
    assert len(attempts) == 4


def test_broker_not_ready_retries_retriable_kafka_errors_only() -> None:
    calls: list[int] = []

    def coordinator() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise Retriable("no coordinator yet")
        return "described"

    assert retry.broker_not_ready(timeout_s=5)(coordinator) == "described"
    with pytest.raises(Final):
        retry.broker_not_ready(timeout_s=5)(lambda: (_ for _ in ()).throw(Final("denied")))


def test_database_outage_backs_off_then_gives_up() -> None:
    sleeps: list[float] = []

    async def before_sleep(state: object) -> None:
        sleeps.append(state.upcoming_sleep)  # type: ignore[attr-defined]

    async def run() -> None:
        policy = retry.database_outage(
            lambda e: isinstance(e, Retriable),
            give_up_after_s=0.2,
            max_backoff_s=0.05,
            before_sleep=before_sleep,
        )
        async for attempt in policy:
            with attempt:
                raise Retriable("down")

    with pytest.raises(Retriable):
        asyncio.run(run())
    assert sleeps and max(sleeps) <= 0.05  # the cap holds


def test_database_outage_does_not_retry_refusals() -> None:
    tries: list[int] = []

    async def run() -> None:
        policy = retry.database_outage(
            lambda e: isinstance(e, Retriable),
            give_up_after_s=60,
            max_backoff_s=1,
            before_sleep=lambda state: None,
        )
        async for attempt in policy:
            with attempt:
                tries.append(1)
                raise Final("rows refused")

    with pytest.raises(Final):
        asyncio.run(run())
    assert tries == [1]
