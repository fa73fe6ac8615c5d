"""What a stage of the worker does when something fails (README, "Failures").

Faust restarts an agent that raises, and acknowledges the batch it held on the way out (the
``finally`` of ``Stream.take_events``): its offsets are committed with the next commit, though
nothing of the batch was done. A hole like that must never happen, so:

- A failure that is one record's fault (the pure code raised on it) makes that record a dead
  letter ``internal_error``, with the exception's class and redacted message, and the batch goes
  on. ``palliwatch_internal_errors_total`` counts them and an ops alert fires on any.
- Any other failure stops the worker at once, from inside the agent, before Faust can
  acknowledge anything: ``os._exit`` skips every ``finally`` and the commit on shutdown, as a
  ``kill -9`` would (tests/test_crash_recovery.py shows the restart from committed offsets is
  exact). Whatever runs the worker (systemd, Kubernetes, the demo) starts it again.

``PALLIWATCH_INJECT_FAULT`` makes a stage fail on purpose, for the fault tests:
``settle:record:5`` raises on the fifth record that stage handles, ``screen:batch:2`` in the
second batch; several are separated by commas. Unset (always, outside tests), it costs a
dictionary lookup.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from processors import metrics
from processors.validation import DeadLetter, Reason
from schemas.identity import redact

log = logging.getLogger("palliwatch.worker")

EXIT_FATAL = 70  # EX_SOFTWARE: the worker stopped itself; restart it
ENV_INJECT = "PALLIWATCH_INJECT_FAULT"
ZONES = ("record", "batch")
_MESSAGE_CHARS = 300


class InjectedFault(RuntimeError):
    """Raised by ``inject`` when PALLIWATCH_INJECT_FAULT asks for it."""


def describe(exc: BaseException) -> str:
    """The exception's class and message, redacted and bounded (it may quote a value)."""
    return f"{type(exc).__name__}: {redact(str(exc))[:_MESSAGE_CHARS]}"


def internal_error(stage: str, exc: BaseException) -> DeadLetter:
    metrics.INTERNAL_ERRORS.labels(stage).inc()
    return DeadLetter(Reason.INTERNAL_ERROR, f"{stage} failed on this record: {describe(exc)}")


def fatal(stage: str, exc: BaseException) -> NoReturn:
    """Stop the worker now, committing nothing more (module docstring)."""
    log.critical(
        "worker stopped: %s failed outside any one record (%s); nothing of its batch is "
        "committed, restart the worker to resume from the committed offsets",
        stage,
        describe(exc),
    )
    for handler in logging.getLogger().handlers + log.handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_FATAL)


def guarded(stage: str) -> Callable[[Callable[[Any], Awaitable[None]]], Any]:
    """An agent body that stops the worker on any exception instead of letting Faust restart
    it (and acknowledge its batch)."""

    def wrap(body: Callable[[Any], Awaitable[None]]) -> Any:
        @functools.wraps(body)
        async def agent(stream: Any) -> None:
            try:
                await body(stream)
            except asyncio.CancelledError:
                raise  # the worker is stopping
            except BaseException as exc:  # noqa: BLE001 - every failure stops the worker
                fatal(stage, exc)

        return agent

    return wrap


def _plan(text: str) -> dict[tuple[str, str], int]:
    plan: dict[tuple[str, str], int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            stage, zone, nth = item.split(":")
            if zone not in ZONES:
                raise ValueError(zone)
            plan[(stage, zone)] = int(nth)
        except ValueError as e:
            raise SystemExit(
                f"palliwatch: {ENV_INJECT}={text!r}: use stage:record:N or stage:batch:N "
                "(comma separated)"
            ) from e
    return plan


_PLAN = _plan(os.environ.get(ENV_INJECT, ""))
_SEEN: dict[tuple[str, str], int] = {}


def inject(stage: str, zone: str) -> None:
    """Raise InjectedFault when the plan asks for this stage and zone now."""
    if not _PLAN:
        return
    key = (stage, zone)
    if key not in _PLAN:
        return
    _SEEN[key] = _SEEN.get(key, 0) + 1
    if _SEEN[key] == _PLAN[key]:
        raise InjectedFault(f"fault injected into {stage} ({zone} {_PLAN[key]})")
