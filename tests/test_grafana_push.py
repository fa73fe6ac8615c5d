"""CONTRACT TEST of `palliwatch grafana push` against a fake Grafana.

No Grafana binary runs on this machine, so a small http.server on 127.0.0.1 implements the few
Grafana HTTP API endpoints the push calls (datasources, folders, dashboards, alerting
provisioning: rule groups, contact points, mute timings, policies), with Grafana's habits that
matter for idempotency: it adds ids, versions and provenance, hides secrets, and reports
durations as 1h0m0s. It records every request. This proves the client side of the contract
(which endpoints, which bodies, nothing written twice), not Grafana's own behaviour.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from grafana import alerts, dashboards
from streams.cli import main


def _grafana_duration(text: str) -> str:
    m = re.fullmatch(r"(\d+)([smh])", text)
    if not m:
        return text
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, str | None]] = []
        self.datasources: dict[str, Any] = {}
        self.folders: dict[str, Any] = {}
        self.dashboards: dict[str, Any] = {}
        self.rule_groups: dict[tuple[str, str], Any] = {}
        self.contact_points: dict[str, Any] = {}
        self.mute_timings: dict[str, Any] = {}
        self.policy: Any = {"receiver": "grafana-default-email", "group_by": ["grafana_folder"]}
        self.next_id = 1

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests if m != "GET"]

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        p = path.split("?", 1)[0]
        if p == "/api/datasources" and method == "POST":
            stored = {k: v for k, v in body.items() if k != "secureJsonData"}
            stored |= {"id": self._id(), "orgId": 1, "readOnly": False, "basicAuth": False}
            if "secureJsonData" in body:
                stored["secureJsonFields"] = {k: True for k in body["secureJsonData"]}
            self.datasources[body["uid"]] = stored
            return 200, {"datasource": stored, "message": "Datasource added"}
        if m := re.fullmatch(r"/api/datasources/uid/([^/]+)", p):
            uid = m.group(1)
            if method == "GET":
                return (200, self.datasources[uid]) if uid in self.datasources else (404, {})
            if method == "PUT":
                self.datasources[uid] |= {k: v for k, v in body.items() if k != "secureJsonData"}
                return 200, {"message": "Datasource updated"}
        if p == "/api/folders" and method == "POST":
            self.folders[body["uid"]] = {**body, "id": self._id(), "version": 1}
            return 200, self.folders[body["uid"]]
        if m := re.fullmatch(r"/api/folders/([^/]+)", p):
            uid = m.group(1)
            if method == "GET":
                return (200, self.folders[uid]) if uid in self.folders else (404, {})
            if method == "PUT":
                self.folders[uid]["title"] = body["title"]
                return 200, self.folders[uid]
        if m := re.fullmatch(r"/api/dashboards/uid/([^/]+)", p):
            found = self.dashboards.get(m.group(1))
            return (200, copy.deepcopy(found)) if found else (404, {"message": "not found"})
        if p == "/api/dashboards/db" and method == "POST":
            d = copy.deepcopy(body["dashboard"])
            old = self.dashboards.get(d["uid"])
            d["id"] = old["dashboard"]["id"] if old else self._id()
            d["version"] = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[d["uid"]] = {
                "dashboard": d,
                "meta": {
                    "folderUid": body.get("folderUid"),
                    "slug": d["uid"],
                    "provisioned": False,
                },
            }
            return 200, {"status": "success", "uid": d["uid"], "version": d["version"]}
        if m := re.fullmatch(r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", p):
            key = (m.group(1), m.group(2))
            if method == "GET":
                found = self.rule_groups.get(key)
                return (200, copy.deepcopy(found)) if found else (404, {"message": "not found"})
            if method == "PUT":
                g = copy.deepcopy(body)
                for r in g["rules"]:
                    r |= {
                        "id": self._id(),
                        "orgID": 1,
                        "provenance": "api",
                        "updated": "2026-01-01T00:00:00Z",
                        "for": _grafana_duration(r["for"]),
                    }
                self.rule_groups[key] = g
                return 200, g
        if p == "/api/v1/provisioning/contact-points":
            if method == "GET":
                return 200, [copy.deepcopy(c) for c in self.contact_points.values()]
            if method == "POST":
                self.contact_points[body["uid"]] = {**body, "provenance": "api"}
                return 202, self.contact_points[body["uid"]]
        if m := re.fullmatch(r"/api/v1/provisioning/contact-points/([^/]+)", p):
            self.contact_points[m.group(1)] = {**body, "provenance": "api"}
            return 202, {}
        if p == "/api/v1/provisioning/mute-timings":
            if method == "GET":
                return 200, list(self.mute_timings.values())
            if method == "POST":
                self.mute_timings[body["name"]] = {**body, "version": "abc", "provenance": "api"}
                return 201, self.mute_timings[body["name"]]
        if m := re.fullmatch(r"/api/v1/provisioning/mute-timings/([^/]+)", p):
            self.mute_timings[m.group(1)] = {**body, "provenance": "api"}
            return 200, body
        if p == "/api/v1/provisioning/policies":
            if method == "GET":
                return 200, copy.deepcopy(self.policy)
            if method == "PUT":
                self.policy = copy.deepcopy(body) | {"provenance": "api"}
                return 202, {"message": "policies updated"}
        return 404, {"message": f"fake Grafana: no route {method} {p}"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.requests.append((self.command, self.path, body, self.headers.get("Authorization")))
            status, payload = fake.handle(self.command, self.path, body)
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def push(url: str, *extra: str) -> None:
    main(["grafana", "push", "--url", url, "--token", "test-token", *extra])


def test_contract_first_push_creates_everything(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url)
    n_contacts = len(alerts.contact_points())
    writes = fake.writes()
    assert writes.count(("POST", "/api/datasources")) == 2
    assert writes.count(("POST", "/api/folders")) == 1
    assert writes.count(("POST", "/api/dashboards/db")) == 4
    assert sorted(p for m, p in writes if "rule-groups" in p) == [
        f"/api/v1/provisioning/folder/palliwatch/rule-groups/{alerts.OPS_GROUP}",
        f"/api/v1/provisioning/folder/palliwatch/rule-groups/{alerts.QUALITY_GROUP}",
    ]
    assert writes.count(("POST", "/api/v1/provisioning/contact-points")) == n_contacts == 22
    assert writes.count(("POST", "/api/v1/provisioning/mute-timings")) == 1
    assert writes[-1] == ("PUT", "/api/v1/provisioning/policies")  # after what it names
    assert len(writes) == 2 + 1 + 4 + 2 + n_contacts + 1 + 1
    assert {auth for *_, auth in fake.requests} == {"Bearer test-token"}

    pg = fake.datasources["palliwatch-pg"]
    assert (pg["user"], pg["type"]) == ("palliwatch_reader", "grafana-postgresql-datasource")
    sent = next(
        b for m, p, b, _ in fake.requests if p == "/api/datasources" and b["uid"] == pg["uid"]
    )
    assert sent["secureJsonData"] == {"password": "palliwatch_reader_local"}
    assert set(fake.dashboards) == {d["uid"] for d in dashboards.all_dashboards().values()}
    assert {d["meta"]["folderUid"] for d in fake.dashboards.values()} == {"palliwatch"}
    quality = fake.rule_groups[("palliwatch", alerts.QUALITY_GROUP)]
    assert len(quality["rules"]) == 6
    drill = quality["rules"][0]["annotations"]["drilldown"]
    assert drill.startswith(f"{url}/d/{dashboards.REGION_UID}/?var-region=")
    routes = fake.policy["routes"]
    assert routes[0] == {"receiver": "palliwatch ops", "object_matchers": [["team", "=", "ops"]]}
    region_01 = next(r for r in routes if ["region", "=", "01"] in r["object_matchers"])
    assert region_01["receiver"] == "palliwatch region 01"
    assert region_01["mute_time_intervals"] == [alerts.MUTE_QUALITY]
    assert "applied" in capsys.readouterr().out


def test_contract_second_push_changes_nothing(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url)
    before = len(fake.requests)
    capsys.readouterr()
    push(url)
    second = fake.requests[before:]
    assert [(m, p) for m, p, _, _ in second if m != "GET"] == []
    assert "nothing to change" in capsys.readouterr().out


def test_contract_dry_run_writes_nothing_and_prints_the_diff(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url, "--dry-run")
    assert fake.writes() == []
    out = capsys.readouterr().out
    assert "create dashboard: palliwatch: national overview" in out
    assert re.search(r'^\+\s+"uid": "palliwatch-overview",?$', out, re.M)
    assert "dry run:" in out

    # Someone edits a dashboard and a contact point in Grafana: dry-run shows exactly that.
    push(url)
    fake.dashboards[dashboards.OVERVIEW_UID]["dashboard"]["title"] = "edited by hand"
    fake.contact_points["pw-contact-region-09"]["settings"]["addresses"] = "someone@else"
    n = len(fake.writes())
    capsys.readouterr()
    push(url, "--dry-run")
    out = capsys.readouterr().out
    assert len(fake.writes()) == n
    assert "update dashboard: palliwatch: national overview" in out
    assert re.search(r'^-\s+"title": "edited by hand",?$', out, re.M)
    assert re.search(r'^\+\s+"title": "palliwatch: national overview",?$', out, re.M)
    assert "update contact point: palliwatch region 09" in out
    assert out.count("update ") == 2

    push(url)
    assert fake.writes()[n:] == [
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/v1/provisioning/contact-points/pw-contact-region-09"),
    ]
    assert fake.dashboards[dashboards.OVERVIEW_UID]["dashboard"]["version"] == 2


def test_unreachable_grafana_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit, match="refused or is unreachable"):
        push(f"http://127.0.0.1:{port}")
