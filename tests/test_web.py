"""The worker's web port serves GET /metrics and GET /health and nothing else (streams/web.py):
none of Faust's own pages (/table/... would read the `people` table's person_refs and survey
state over HTTP; /router/..., /, /graph/, /stats/, /assignment/, /performance/ expose the
cluster and the worker's internals).

The first test runs a real `palliwatch worker` (conftest's `worker` fixture, on its own port)
and asks it over HTTP; the others build a Faust app in this process and read the routes its
aiohttp server registers.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import faust
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import DEATH_SURVEYS
from streams import web
from tests.conftest import Isolated, WorkerProcess

# Faust 0.15.3's pages (faust/web/apps/*.py), with keys and names filled in.
FAUST_PAGES = (
    "/",
    "/table/",
    "/table/people/",
    "/table/people/0123abcd/",
    "/table/scope-months/",
    "/router/",
    "/router/people/",
    "/router/people/0123abcd/",
    "/graph/",
    "/stats/",
    "/assignment/",
    "/performance/",
)
# Near misses of ours: only the exact paths answer.
NEAR_MISSES = ("/metrics/", "/health/", "/metrics/x", "/healthz", "/static/", "/index.html")


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _wait_until_running(port: int, worker: WorkerProcess) -> tuple[dict[str, Any], list[Any]]:
    """Poll /health until 200; return its body and every earlier answer (or connection
    error while the port is not yet open)."""
    earlier: list[Any] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        worker.assert_alive()
        try:
            status, _, body = _get(port, web.HEALTH_PATH)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
            continue
        if status == 200:
            return json.loads(body), earlier
        earlier.append((status, json.loads(body)))
        time.sleep(0.2)
    raise AssertionError(f"/health never answered 200: {earlier[-3:]}\n{worker.log_tail()}")


@pytest.mark.integration
def test_the_worker_serves_metrics_and_health_and_none_of_fausts_pages(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    s = isolated.settings
    port = s.web_port
    body, earlier = _wait_until_running(port, worker)

    # Before it is ready the worker says so (503 and why), and nothing but that.
    for status, early in earlier:
        assert status == 503, (status, early)
        assert early["status"] in ("starting", "rebalancing", "recovering"), early
        assert early["detail"] and early["app_id"] == s.app_id, early
    # Running: its group, and the partitions it processes (alone: all of them).
    assert body["status"] == "running" and body["app_id"] == s.app_id, body
    assert body["assignment"][s.topic(DEATH_SURVEYS)] == list(range(s.partitions)), body

    status, headers, text = _get(port, web.METRICS_PATH)
    assert status == 200
    # Prometheus's text exposition format (the version prometheus_client writes).
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST.split("; charset")[0], headers
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {"palliwatch_records_consumed", "palliwatch_sink_stalled"} <= names, sorted(names)

    # HEAD is answered as GET is (Prometheus and probes may use it); nothing else is.
    assert _get(port, web.HEALTH_PATH, "HEAD")[0] == 200
    for path in web.PATHS:
        for method in ("POST", "PUT", "DELETE"):
            assert _get(port, path, method)[0] == 405, (method, path)

    for path in FAUST_PAGES + NEAR_MISSES:
        status, _, text = _get(port, path)
        assert status == 404, (path, status, text[:200])
        assert b"people" not in text and b"palliwatch" not in text, (path, text[:200])


def _routes(app: faust.App) -> set[tuple[str, str]]:
    app.web.init_server()
    return {(r.method, r.resource.canonical) for r in app.web.web_app.router.routes()}


def test_only_metrics_and_health_are_registered() -> None:
    app = faust.App("palliwatch-web-test", **web.app_settings(bind="127.0.0.1", port=1))
    web.install(app)
    app.Table("people", default=int)  # a table exists, as in the worker: still no /table/
    assert _routes(app) == {(m, p) for m in ("GET", "HEAD") for p in web.PATHS}


def test_fausts_settings_alone_leave_its_index_page_on() -> None:
    """Why streams.web has a Web of its own: with every page setting off, Faust still mounts
    its production index at / (faust.web.base.PRODUCTION_BLUEPRINTS)."""
    app = faust.App("palliwatch-web-test-plain", **web.app_settings(bind="127.0.0.1", port=1))
    assert ("GET", "/") in _routes(app)


def test_install_after_faust_built_its_web_is_refused() -> None:
    app = faust.App("palliwatch-web-test-late")
    assert app.web is not None  # Faust's own Web, built on first use
    with pytest.raises(RuntimeError, match="before any @app.page"):
        web.install(app)


def test_health_is_503_starting_until_the_tables_are_restored() -> None:
    app = faust.App("palliwatch-web-test-health")
    web.install(app)
    status, body = web.health(app)
    assert status == 503
    assert body["status"] == "starting" and "restoring the tables" in body["detail"], body
    assert body["app_id"] == "palliwatch-web-test-health"
