"""The worker, started: Faust's internals checked and patched (streams/faust_compat.py), then
the app (streams/app.py) with its agents registered (streams/agents/). ``palliwatch worker``
runs what ``start`` returns."""

from __future__ import annotations

import faust

from schemas.identity import fold
from streams import faust_compat


def start() -> faust.App:
    """The app, ready to run. Refuses a faust-streaming release faust_compat was not written
    for, before anything is connected."""
    faust_compat.apply()
    fold("\uff11")  # builds the identity scan's folding table (~1 s) at start, not on a record
    from streams import agents
    from streams.app import app

    agents.register()
    return app
