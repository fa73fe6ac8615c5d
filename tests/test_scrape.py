"""The one /metrics reader (streams/tooling/scrape.py), against prometheus_client's own
exposition served over HTTP."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.tooling.scrape import scrape


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_totals_values_and_histograms_by_label() -> None:
    registry = CollectorRegistry()
    dead = Counter("dl_total", "", ["topic", "reason"], registry=registry)
    dead.labels("a", "x").inc(2)
    dead.labels("a", "y").inc(3)
    dead.labels("b", "x").inc(7)
    Gauge("pending", "", registry=registry).set(0)
    seconds = Histogram("eval_seconds", "", ["pass"], buckets=(0.1, 1.0), registry=registry)
    seconds.labels("headline").observe(0.05)
    seconds.labels("headline").observe(0.5)
    seconds.labels("full").observe(5)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        m = scrape(port)
        assert m is not None
        assert m.total("dl_total") == 12
        assert m.total("dl_total", topic="a") == 5  # the reason label is not in the way
        assert m.total("dl_total", reason="x") == 9
        assert m.value("pending", 1.0) == 0 and m.value("absent", 1.0) == 1.0
        assert m.histogram("eval_seconds", **{"pass": "headline"}) == [
            (0.1, 1.0),
            (1.0, 2.0),
            (float("inf"), 2.0),
        ]
    finally:
        server.shutdown()
        thread.join(5)


def test_a_worker_that_does_not_answer_is_none() -> None:
    assert scrape(_free_port()) is None
