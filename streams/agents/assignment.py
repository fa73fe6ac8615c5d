"""What this worker holds: the scope partitions it owns (rebalance bookkeeping), and whether it
is working through a backlog."""

from __future__ import annotations

import functools
from typing import Any, cast

from processors import flow
from schemas import topics
from streams import faust_compat
from streams.agents.effects import in_hand
from streams.app import app, lag_sources, scope_topic, settings
from streams.faust_compat import key_partition


class Assignment:
    """The scope-deltas partitions this worker owns, and a count of rebalances: the
    aggregation holds decoded state and work lists in memory, which a rebalance makes stale
    (``Aggregator.forget``)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.generation = 0
        self.scope_partitions: frozenset[int] = frozenset()

    def owns(self, scope: str) -> bool:
        return self._partition(scope) in self.scope_partitions

    @functools.cache  # noqa: B019 - one instance, for the worker's life
    def _partition(self, scope: str) -> int:
        return key_partition(scope.encode(), self.partitions)

    def revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # The job under way stops at its next chunk. What the worker owns is known once the
        # assignment is: records of partitions it keeps may still arrive until then.
        self.generation += 1

    def assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        (tps,) = args  # the whole assignment (eager rebalancing), not only what is new
        self.generation += 1
        self.scope_partitions = frozenset(
            tp.partition for tp in tps if tp.topic in scope_topic.topics
        )


assignment = Assignment(topics.SCOPE_DELTAS.partitions or settings.partitions)
# mode's handler type does not admit a bound method with these parameters (mypy).
app.on_partitions_revoked.connect(cast(Any, assignment.revoked))
app.on_partitions_assigned.connect(cast(Any, assignment.assigned))


def backlog() -> bool:
    """Whether the worker is working through a backlog: records of its input not read yet, and
    survey batches its stages hold in hand."""
    unread = faust_compat.unread(app.consumer, lag_sources) + sum(in_hand.values())
    return unread > flow.CAUGHT_UP_RECORDS
