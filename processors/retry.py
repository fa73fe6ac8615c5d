"""Every retry and wait in palliwatch: one tenacity policy per kind of error, stated here.

- database outage (the sink, processors/sink.py): 0.5 s, doubling up to a cap, until a
  deadline, then the sink gives up with the error that names the fix;
- database contention (a migration meeting a TimescaleDB job, DROP DATABASE meeting a backend
  that is just ending): a few quick tries, a little longer apart each time, then raise;
- broker not ready (a new cluster without a group coordinator yet): 1 s apart for 60 s;
- service starting (the local stack, new topics reaching the metadata): poll until true or a
  deadline.

Errors that retrying cannot help (rows the database refuses, a certificate that does not
verify, an ACL that denies) are never retried: each policy retries only its own kind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
    wait_incrementing,
)

log = logging.getLogger("palliwatch.retry")


def database_outage(
    transient: Callable[[BaseException], bool],
    give_up_after_s: float,
    max_backoff_s: float,
    before_sleep: Callable[[RetryCallState], Any],
) -> AsyncRetrying:
    """The sink's writes while the database is down: 0.5 s, doubling up to ``max_backoff_s``,
    until ``give_up_after_s`` have passed since the first try (then the last error is raised;
    ``reraise``). ``before_sleep`` logs, counts and drops the broken connection."""
    return AsyncRetrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential(multiplier=0.5, max=max_backoff_s),
        stop=stop_after_delay(give_up_after_s),
        before_sleep=before_sleep,
        reraise=True,
    )


def database_contention(
    *errors: type[BaseException],
    attempts: int,
    step_s: float,
    when: Callable[[BaseException], bool],
) -> Retrying:
    """A statement that met another session's work for a moment (its transaction rolled back
    whole): run it again, ``step_s`` longer apart each time, ``attempts`` times at the most."""
    return Retrying(
        retry=retry_if_exception_type(errors) & retry_if_exception(when),
        wait=wait_incrementing(start=step_s, increment=step_s),
        stop=stop_after_attempt(attempts),
        before_sleep=lambda state: log.warning(
            "%s; retrying", state.outcome.exception() if state.outcome else "contention"
        ),
        reraise=True,
    )


def broker_not_ready(timeout_s: float = 60.0) -> Retrying:
    """Kafka errors the client marks retriable (kafka-python's ``retriable``): a new cluster has
    no group coordinator until its offsets topic exists."""
    return Retrying(
        retry=retry_if_exception(lambda e: bool(getattr(e, "retriable", False))),
        wait=wait_fixed(1.0),
        stop=stop_after_delay(timeout_s),
        reraise=True,
    )


def wait_until(ready: Callable[[], bool], timeout_s: float, interval_s: float) -> bool:
    """Poll ``ready`` every ``interval_s`` until it is true (True) or ``timeout_s`` have passed
    (False: the caller raises the error that names the fix). An exception from ``ready`` stops
    the wait at once (a process that exited)."""
    policy = Retrying(
        retry=retry_if_result(lambda ok: not ok),
        wait=wait_fixed(interval_s),
        stop=stop_after_delay(timeout_s),
        retry_error_callback=lambda state: False,
    )
    return bool(policy(ready))
