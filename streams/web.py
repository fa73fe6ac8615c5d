"""The worker's HTTP port: ``GET /metrics`` (Prometheus) and ``GET /health``, nothing else.

Faust's aiohttp server mounts pages of its own (faust-streaming 0.15.3, faust/web/base.py): the
*default* blueprints ``/router/...`` (which worker owns a key; the cluster's worker URLs) and
``/table/...`` (every table's keys and values over HTTP), the *debug* ones ``/graph/`` (the
service tree) and ``/`` + ``/assignment/`` (sensor counters, partition assignment), the
*optional* ``/performance/``, and the *production* index that takes ``/`` whenever the
statistics are off. Each but the production index has a setting (``web_router_enabled`` ...,
BLUEPRINT_FLAGS); the lists themselves are class attributes of the Web driver, which a subclass
may change. The ``people`` table holds person_refs and their survey state: reading it over HTTP
is precisely what must not be possible, so palliwatch leaves every one of these out twice over:

- the worker's Web is the aiohttp driver with all four blueprint lists empty (no page of Faust's
  is registered at all, the production index included, which no setting removes);
- the settings are off too, so a Faust release that moves a page into a list of its own still
  leaves it off.

``install`` assigns ``app.web`` (a mode ``cached_property``, which takes assignment) before
anything else has built Faust's own. The server keeps its place in Faust's boot order: it
starts with the app, before table recovery, so Prometheus sees the worker (``up`` and its
metrics) while it restores its tables, and ``/health`` says it is still starting. (Faust's
``App.web_server`` alternative starts only after recovery: a long restore would look like a
dead worker to ``PalliwatchWorkerDown``.)

``/health`` (docs: README, Operations): 200 with ``{"status": "running", ...}`` and the
partitions this worker is assigned once the worker has joined its group, restored its tables
and its sink is writing; otherwise 503 with the status that holds it up (``starting``,
``rebalancing``, ``recovering``, ``database-unavailable``, ``stopping``) and a ``detail`` line
saying what it waits for. The compose file's healthcheck and any orchestrator's readiness
probe read the status code.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams import faust_compat

METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
PATHS = (METRICS_PATH, HEALTH_PATH)

# Faust's web settings (faust.types.settings): its pages off, the server on.
FAUST_PAGES_OFF = {
    "web_router_enabled": False,  # only @app.table_route needs it; palliwatch has none
    "web_tables_enabled": False,
    "web_stats_enabled": False,
    "web_graph_enabled": False,
    "web_metrics_enabled": False,
}


def app_settings(*, bind: str, port: int) -> dict[str, Any]:
    """The keyword arguments of ``faust.App`` for the worker's web port."""
    return {
        "web_bind": bind,
        "web_host": "127.0.0.1",
        "web_port": port,
        # The pages only read process state: no thread of their own needed.
        "web_in_thread": False,
        **FAUST_PAGES_OFF,
    }


def health(app: faust.App) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /health: 200 only while the worker processes its partitions."""
    body: dict[str, Any] = {"app_id": app.conf.id}
    if app.should_stop:
        return 503, {**body, "status": "stopping", "detail": "the worker is shutting down"}
    if not faust_compat.recovery_completed(app):
        return 503, {
            **body,
            "status": "starting",
            "detail": "joining the consumer group and restoring the tables from their changelogs",
        }
    if app.rebalancing:
        return 503, {**body, "status": "rebalancing", "detail": "partitions are being reassigned"}
    if app.in_recovery:
        return 503, {
            **body,
            "status": "recovering",
            "detail": "restoring newly assigned table partitions from their changelogs",
        }
    if REGISTRY.get_sample_value("palliwatch_sink_stalled"):
        return 503, {
            **body,
            "status": "database-unavailable",
            "detail": "the sink is retrying a batch the database refused (see the worker log)",
        }
    assignment: dict[str, list[int]] = defaultdict(list)
    for tp in sorted(app.assignor.assigned_actives()):
        assignment[tp.topic].append(tp.partition)
    return 200, {**body, "status": "running", "assignment": dict(assignment)}


def install(app: faust.App) -> None:
    """Give ``app`` the Web above with /metrics and /health, before anything builds Faust's."""
    if faust_compat.web_built(app):
        raise RuntimeError(
            "app.web was built before streams.web.install(app): call install right after "
            "faust.App(...), before any @app.page"
        )
    app.web = faust_compat.PagelessWeb(app)

    @app.page(METRICS_PATH)
    async def prometheus_metrics(view: faust.web.View, request: faust.web.Request) -> Any:
        # aiohttp takes the charset separately from the media type.
        media_type = CONTENT_TYPE_LATEST.split("; charset")[0]
        return view.bytes(generate_latest(), content_type=media_type)

    @app.page(HEALTH_PATH)
    async def health_page(view: faust.web.View, request: faust.web.Request) -> Any:
        status, body = health(app)
        return view.json(body, status=status)
