"""The worker's agents and timers, one module each. Importing a module registers what it
defines on the app (streams/app.py); ``register`` imports them all, in the worker's order
(streams/worker.py calls it once Faust's internals are patched)."""

from __future__ import annotations

import importlib

from streams import faust_compat

MODULES = ("screen", "settle", "official", "structure", "aggregate", "tick", "observe", "store")


def register() -> None:
    # Agents never run on unpatched Faust (commits on compacted topics would stall).
    if not faust_compat.applied():
        raise RuntimeError("apply streams/faust_compat.py first (streams.worker.start does)")
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
