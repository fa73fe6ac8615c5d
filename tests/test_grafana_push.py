"""CONTRACT TEST of `palliwatch grafana push` (and grafana/bootstrap/create_orgs.sh) against a
fake Grafana.

No Grafana binary runs on this machine, so a small http.server on 127.0.0.1 implements the few
Grafana HTTP API endpoints the push calls (organisations, and per organisation chosen by the
X-Grafana-Org-Id header: datasources, folders, dashboards, alerting provisioning: rule groups,
contact points, mute timings, policies), with Grafana's habits that matter here: a new
organisation gets the next id and its creator as a member, organisation endpoints want a server
admin (basic auth), it adds ids, versions and provenance, hides secrets, keeps secure fields
an update does not send but replaces jsonData wholesale, and reports durations as 1h0m0s. It
records every request. This proves the client side of the contract (which endpoints, which
bodies, in which organisation, nothing written twice), not Grafana's own behaviour.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from grafana import alerts, dashboards
from grafana.orgs import national, orgs, public, regional
from streams.settings import REPO_ROOT, local_password
from streams.tooling.cli import main

ADMIN = ("admin", "s3cret")
BASIC = "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
N_ORGS = len(orgs())


def _grafana_duration(text: str) -> str:
    m = re.fullmatch(r"(\d+)([smh])", text)
    if not m:
        return text
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


@dataclass
class OrgState:
    name: str
    datasources: dict[str, Any] = field(default_factory=dict)
    folders: dict[str, Any] = field(default_factory=dict)
    dashboards: dict[str, Any] = field(default_factory=dict)
    rule_groups: dict[tuple[str, str], Any] = field(default_factory=dict)
    contact_points: dict[str, Any] = field(default_factory=dict)
    mute_timings: dict[str, Any] = field(default_factory=dict)
    policy: Any = field(
        default_factory=lambda: {"receiver": "grafana-default-email", "group_by": ["alertname"]}
    )


@dataclass
class Request:
    method: str
    path: str
    body: Any
    auth: str | None
    org_id: int  # the organisation the request worked in


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.orgs: dict[int, OrgState] = {1: OrgState("Main Org.")}
        self.next_org = 2
        self.next_id = 1

    def writes(self, org_id: int | None = None) -> list[tuple[str, str]]:
        return [
            (r.method, r.path)
            for r in self.requests
            if r.method != "GET" and (org_id is None or r.org_id == org_id)
        ]

    def org(self, name: str) -> OrgState:
        return next(o for o in self.orgs.values() if o.name == name)

    def org_id(self, name: str) -> int:
        return next(i for i, o in self.orgs.items() if o.name == name)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def handle(
        self, method: str, path: str, body: Any, auth: str | None, org_id: int
    ) -> tuple[int, Any]:
        p = unquote(path.split("?", 1)[0])
        if p.startswith("/api/orgs"):
            if auth != BASIC:  # a server admin's call: not a service account token
                return 403, {"message": "Permission denied"}
            return self._orgs(method, p, body)
        if org_id not in self.orgs:
            return 401, {"message": "User not a member of organization"}
        return self._in_org(self.orgs[org_id], method, p, body, org_id)

    def _orgs(self, method: str, p: str, body: Any) -> tuple[int, Any]:
        if p == "/api/orgs" and method == "GET":
            return 200, [{"id": i, "name": o.name} for i, o in sorted(self.orgs.items())]
        if p == "/api/orgs" and method == "POST":
            if any(o.name == body["name"] for o in self.orgs.values()):
                return 409, {"message": "Organization name taken"}
            new = self.next_org
            self.next_org += 1
            self.orgs[new] = OrgState(body["name"])
            return 200, {"message": "Organization created", "orgId": new}
        if m := re.fullmatch(r"/api/orgs/name/(.+)", p):
            found = [(i, o) for i, o in self.orgs.items() if o.name == m.group(1)]
            return (200, {"id": found[0][0], "name": m.group(1)}) if found else (404, {})
        if m := re.fullmatch(r"/api/orgs/(\d+)", p):
            i = int(m.group(1))
            if i not in self.orgs:
                return 404, {"message": "Organization not found"}
            if method == "PUT":
                self.orgs[i].name = body["name"]
                return 200, {"message": "Organization updated"}
            return 200, {"id": i, "name": self.orgs[i].name, "address": {"city": ""}}
        return 404, {"message": f"fake Grafana: no route {method} {p}"}

    def _in_org(self, st: OrgState, method: str, p: str, body: Any, org_id: int) -> tuple[int, Any]:
        if p == "/api/datasources" and method == "POST":
            stored = {k: v for k, v in body.items() if k != "secureJsonData"}
            stored |= {"id": self._id(), "orgId": org_id, "readOnly": False, "basicAuth": False}
            stored["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
            st.datasources[body["uid"]] = stored
            return 200, {"datasource": stored, "message": "Datasource added"}
        if m := re.fullmatch(r"/api/datasources/uid/([^/]+)", p):
            uid = m.group(1)
            if method == "GET":
                found = st.datasources.get(uid)
                return (200, copy.deepcopy(found)) if found else (404, {})
            if method == "PUT":
                old = st.datasources[uid]
                # Grafana replaces the datasource (jsonData included) and keeps the secure
                # fields the update does not send.
                stored = {k: v for k, v in body.items() if k != "secureJsonData"}
                stored |= {k: old[k] for k in ("id", "orgId", "readOnly", "basicAuth")}
                stored["secureJsonFields"] = old.get("secureJsonFields", {}) | {
                    k: True for k in body.get("secureJsonData", {})
                }
                st.datasources[uid] = stored
                return 200, {"message": "Datasource updated"}
        if p == "/api/folders" and method == "POST":
            st.folders[body["uid"]] = {**body, "id": self._id(), "version": 1}
            return 200, st.folders[body["uid"]]
        if m := re.fullmatch(r"/api/folders/([^/]+)", p):
            uid = m.group(1)
            if method == "GET":
                return (200, st.folders[uid]) if uid in st.folders else (404, {})
            if method == "PUT":
                st.folders[uid]["title"] = body["title"]
                return 200, st.folders[uid]
        if m := re.fullmatch(r"/api/dashboards/uid/([^/]+)", p):
            found = st.dashboards.get(m.group(1))
            return (200, copy.deepcopy(found)) if found else (404, {"message": "not found"})
        if p == "/api/dashboards/db" and method == "POST":
            d = copy.deepcopy(body["dashboard"])
            old = st.dashboards.get(d["uid"])
            d["id"] = old["dashboard"]["id"] if old else self._id()
            d["version"] = old["dashboard"]["version"] + 1 if old else 1
            st.dashboards[d["uid"]] = {
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
                found = st.rule_groups.get(key)
                return (200, copy.deepcopy(found)) if found else (404, {"message": "not found"})
            if method == "PUT":
                g = copy.deepcopy(body)
                for r in g["rules"]:
                    r |= {
                        "id": self._id(),
                        "orgID": org_id,
                        "provenance": "api",
                        "updated": "2026-01-01T00:00:00Z",
                        "for": _grafana_duration(r["for"]),
                    }
                st.rule_groups[key] = g
                return 200, g
        if p == "/api/v1/provisioning/contact-points":
            if method == "GET":
                return 200, [copy.deepcopy(c) for c in st.contact_points.values()]
            if method == "POST":
                st.contact_points[body["uid"]] = {**body, "provenance": "api"}
                return 202, st.contact_points[body["uid"]]
        if m := re.fullmatch(r"/api/v1/provisioning/contact-points/([^/]+)", p):
            st.contact_points[m.group(1)] = {**body, "provenance": "api"}
            return 202, {}
        if p == "/api/v1/provisioning/mute-timings":
            if method == "GET":
                return 200, list(st.mute_timings.values())
            if method == "POST":
                st.mute_timings[body["name"]] = {**body, "version": "abc", "provenance": "api"}
                return 201, st.mute_timings[body["name"]]
        if m := re.fullmatch(r"/api/v1/provisioning/mute-timings/([^/]+)", p):
            st.mute_timings[m.group(1)] = {**body, "provenance": "api"}
            return 200, body
        if p == "/api/v1/provisioning/policies":
            if method == "GET":
                return 200, copy.deepcopy(st.policy)
            if method == "PUT":
                st.policy = copy.deepcopy(body) | {"provenance": "api"}
                return 202, {"message": "policies updated"}
        return 404, {"message": f"fake Grafana: no route {method} {p}"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization")
            org_id = int(self.headers.get("X-Grafana-Org-Id") or 1)  # else the user's current
            with lock:
                fake.requests.append(Request(self.command, self.path, body, auth, org_id))
                status, payload = fake.handle(self.command, self.path, body, auth, org_id)
            out = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()  # as Go
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
    main(["grafana", "push", "--url", url, "--user", ADMIN[0], "--password", ADMIN[1], *extra])


def _per_org_writes(n_contacts: int, national_org: bool) -> int:
    datasources = 2 if national_org else 1
    n_dashboards = len(dashboards.org_dashboards(national() if national_org else public()))
    alerting = 2 + n_contacts + 1 + 1 if national_org else 0
    return datasources + 1 + n_dashboards + alerting


def test_contract_first_push_creates_every_organisation_and_what_goes_in_it(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url)
    n_contacts = len(alerts.contact_points())
    assert n_contacts == 22
    # Every audience's organisation, by name; Grafana's own org 1 is left alone.
    assert {o.name for o in fake.orgs.values()} == {o.name for o in orgs()} | {"Main Org."}
    assert fake.writes(1) == [("POST", "/api/orgs")] * N_ORGS
    assert {r.auth for r in fake.requests} == {BASIC}

    for org in orgs():
        oid = fake.org_id(org.name)
        st = fake.orgs[oid]
        writes = fake.writes(oid)
        assert writes.count(("POST", "/api/folders")) == 1, org.key
        assert writes.count(("POST", "/api/dashboards/db")) == len(org.dashboards()), org.key
        assert {d["meta"]["folderUid"] for d in st.dashboards.values()} == {"palliwatch"}
        models = dashboards.org_dashboards(org)
        assert {u: d["dashboard"]["title"] for u, d in st.dashboards.items()} == {
            m["uid"]: m["title"] for m in models.values()
        }
        # One PostgreSQL datasource, logging in as the audience's role, with its password.
        pg = st.datasources[org.datasource_uid]
        assert (pg["user"], pg["type"], pg["orgId"]) == (
            org.role, "grafana-postgresql-datasource", oid,
        )  # fmt: skip
        assert pg["jsonData"]["sslmode"] == "disable"  # a new datasource, no --db-sslmode
        sent = next(
            r.body
            for r in fake.requests
            if r.path == "/api/datasources" and r.org_id == oid and r.body["type"] != "prometheus"
        )
        assert sent["secureJsonData"] == {"password": local_password(org.role)}
        if org.national:
            assert set(st.datasources) == {org.datasource_uid, "palliwatch-prom"}
            assert len(writes) == _per_org_writes(n_contacts, True)
            assert writes[-1] == ("PUT", "/api/v1/provisioning/policies")  # after what it names
        else:
            assert set(st.datasources) == {org.datasource_uid}
            assert not st.rule_groups and not st.contact_points and not st.mute_timings
            assert len(writes) == len(org.dashboards()) + 2, org.key

    st = fake.org(national().name)
    assert sorted(k[1] for k in st.rule_groups) == sorted([alerts.OPS_GROUP, alerts.QUALITY_GROUP])
    quality = st.rule_groups[("palliwatch", alerts.QUALITY_GROUP)]
    assert len(quality["rules"]) == 6
    for rule in quality["rules"]:
        for q in rule["data"]:
            if "rawSql" in q["model"]:
                assert q["datasourceUid"] == national().datasource_uid
    drill = quality["rules"][0]["annotations"]["drilldown"]
    assert drill.startswith(f"{url}/d/{dashboards.REGION_UID}/?var-region=")
    routes = st.policy["routes"]
    assert routes[0] == {"receiver": "palliwatch ops", "object_matchers": [["team", "=", "ops"]]}
    region_01 = next(r for r in routes if ["region", "=", "01"] in r["object_matchers"])
    assert region_01["receiver"] == "palliwatch region 01"
    assert region_01["mute_time_intervals"] == [alerts.MUTE_QUALITY]
    out = capsys.readouterr().out
    assert f"create [{public().name}] organisation: {public().name}" in out
    assert "applied" in out


def test_contract_second_push_changes_nothing(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url)
    before = len(fake.requests)
    capsys.readouterr()
    push(url)
    assert [(r.method, r.path) for r in fake.requests[before:] if r.method != "GET"] == []
    assert "nothing to change" in capsys.readouterr().out


def test_contract_passwords_come_from_the_environment(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = grafana
    org = regional("09")
    monkeypatch.setenv(org.password_env, "from-the-environment")
    push(url)
    oid = fake.org_id(org.name)
    sent = next(r.body for r in fake.requests if r.path == "/api/datasources" and r.org_id == oid)
    assert sent["secureJsonData"] == {"password": "from-the-environment"}


def test_contract_dry_run_writes_nothing_and_prints_the_diff(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url, "--dry-run")
    assert fake.writes() == []
    out = capsys.readouterr().out
    nat = national().name
    assert f"create [{nat}] organisation: {nat}" in out
    assert f"create [{nat}] dashboard: palliwatch: national overview" in out
    assert re.search(r'^\+\s+"uid": "palliwatch-overview",?$', out, re.M)
    assert "dry run:" in out

    # Someone edits a dashboard and a contact point in Grafana: dry-run shows exactly that.
    push(url)
    st = fake.org(nat)
    st.dashboards[dashboards.OVERVIEW_UID]["dashboard"]["title"] = "edited by hand"
    st.contact_points["pw-contact-region-09"]["settings"]["addresses"] = "someone@else"
    n = len(fake.writes())
    capsys.readouterr()
    push(url, "--dry-run")
    out = capsys.readouterr().out
    assert len(fake.writes()) == n
    assert f"update [{nat}] dashboard: palliwatch: national overview" in out
    assert re.search(r'^-\s+"title": "edited by hand",?$', out, re.M)
    assert re.search(r'^\+\s+"title": "palliwatch: national overview",?$', out, re.M)
    assert f"update [{nat}] contact point: palliwatch region 09" in out
    assert out.count("update ") == 2

    push(url)
    assert fake.writes()[n:] == [
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/v1/provisioning/contact-points/pw-contact-region-09"),
    ]
    assert st.dashboards[dashboards.OVERVIEW_UID]["dashboard"]["version"] == 2
    # The public organisation's overview of the same uid was not touched.
    assert fake.org(public().name).dashboards[dashboards.OVERVIEW_UID]["dashboard"]["version"] == 1


def test_contract_push_keeps_the_tls_settings_an_operator_configured(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    push(url)
    org = national()
    st = fake.org(org.name)
    ds = st.datasources[org.datasource_uid]
    tls = {
        "sslmode": "verify-full",
        "tlsConfigurationMethod": "file-content",
        "sslRootCertFile": "",
        "maxOpenConns": 10,
    }
    ds["jsonData"] |= tls
    ds["secureJsonFields"] |= {"tlsCACert": True}
    # Their own TLS settings are not a difference: nothing to push.
    capsys.readouterr()
    push(url)
    assert "nothing to change" in capsys.readouterr().out

    # Something palliwatch manages changed by hand: the update puts it back and keeps TLS.
    ds["user"] = "someone_else"
    n = len(fake.writes())
    push(url)
    assert fake.writes()[n:] == [("PUT", f"/api/datasources/uid/{org.datasource_uid}")]
    ds = st.datasources[org.datasource_uid]
    assert ds["user"] == org.role
    assert {k: ds["jsonData"][k] for k in tls} == tls
    assert ds["secureJsonFields"] == {"password": True, "tlsCACert": True}

    # Told to, it sets the mode (and only the mode).
    push(url, "--db-sslmode", "require")
    ds = st.datasources[org.datasource_uid]
    assert ds["jsonData"]["sslmode"] == "require"
    assert ds["jsonData"]["tlsConfigurationMethod"] == "file-content"
    assert ds["secureJsonFields"]["tlsCACert"] is True


def test_push_needs_a_server_admin(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = grafana
    monkeypatch.delenv("GRAFANA_USER", raising=False)
    with pytest.raises(SystemExit, match="--user and --password"):
        main(["grafana", "push", "--url", url])
    assert fake.requests == []
    with pytest.raises(SystemExit, match="refused or is unreachable"):
        main(["grafana", "push", "--url", url, "--user", "admin", "--password", "wrong"])


def test_unreachable_grafana_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit, match="refused or is unreachable"):
        push(f"http://127.0.0.1:{port}")


# ---- grafana/bootstrap/create_orgs.sh (deploy/compose.yaml) ---------------------------------

SCRIPT = REPO_ROOT / "grafana" / "bootstrap" / "create_orgs.sh"


def create_orgs(url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GRAFANA_URL": url,
        "GF_SECURITY_ADMIN_USER": ADMIN[0],
        "GF_SECURITY_ADMIN_PASSWORD": ADMIN[1],
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )


def test_create_orgs_gives_every_organisation_its_provisioning_id(
    grafana: tuple[FakeGrafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = grafana
    done = create_orgs(url)
    assert done.returncode == 0, done.stderr
    assert {i: o.name for i, o in fake.orgs.items()} == {o.org_id: o.name for o in orgs()}
    assert fake.orgs[1].name == public().name  # Grafana's main org became the public one
    # Again: nothing to create.
    n = len(fake.writes())
    again = create_orgs(url)
    assert again.returncode == 0, again.stderr
    assert fake.writes()[n:] == [("PUT", "/api/orgs/1")]  # the rename, idempotent
    # push then finds every organisation by name and creates none.
    push(url)
    assert ("POST", "/api/orgs") not in fake.writes()[n:]
    assert "create [" in capsys.readouterr().out


def test_create_orgs_stops_on_an_organisation_in_the_way(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    fake.orgs[2] = OrgState("someone else's")
    fake.next_org = 3
    done = create_orgs(url)
    assert done.returncode != 0
    assert "organisation 2 is 'someone else's'" in done.stderr
    assert national().name not in {o.name for o in fake.orgs.values()}


def test_push_takes_a_new_datasources_tls_mode_from_the_environment_and_keeps_it(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PALLIWATCH_GRAFANA_DB_SSLMODE is the operator's: every new datasource gets it, and a
    later push without it leaves each datasource's own mode (also one changed by hand)."""
    fake, url = grafana
    monkeypatch.setenv("PALLIWATCH_GRAFANA_DB_SSLMODE", "verify-full")
    push(url)
    modes = {
        org.key: fake.org(org.name).datasources[org.datasource_uid]["jsonData"]["sslmode"]
        for org in orgs()
    }
    assert set(modes.values()) == {"verify-full"}
    monkeypatch.delenv("PALLIWATCH_GRAFANA_DB_SSLMODE")
    nat = fake.org(national().name).datasources[national().datasource_uid]
    nat["jsonData"]["sslmode"] = "verify-ca"  # an operator's own change
    push(url)
    for org in orgs():
        got = fake.org(org.name).datasources[org.datasource_uid]["jsonData"]["sslmode"]
        assert got == ("verify-ca" if org.national else "verify-full"), org.key
