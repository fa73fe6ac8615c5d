"""Apply the generated artefacts to a running Grafana through its HTTP API (grafana-client).

One Grafana organisation per audience (grafana.orgs): push finds each by name and creates the
missing ones (POST /api/orgs), then works in each through the X-Grafana-Org-Id header. That needs
a Grafana server admin's user and password: a service-account token belongs to one organisation.

`plan()` reads what Grafana has and compares it with what palliwatch wants, object by object and
organisation by organisation, looking only at the fields palliwatch sets (Grafana adds ids,
versions, provenance and defaults of its own). `apply()` writes only the objects that differ,
so a second run changes nothing; `--dry-run` prints the plan as unified diffs and writes nothing.

Objects per organisation: its PostgreSQL datasource (its audience's role), the palliwatch folder
and its dashboards. The national organisation also gets the Prometheus datasource, the alert
rule groups, the contact points, the mute timing and the notification policy tree (the whole
tree of that organisation: Grafana has one per org).

TLS of a datasource is the operator's: push sets sslmode only when it creates the datasource
(or when told to with --db-sslmode) and carries every jsonData field it does not manage (the
TLS mode and certificate paths among them) into its writes, since Grafana replaces jsonData
wholesale on an update. Secure fields it does not send (TLS certificates) Grafana keeps.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from . import alerts, dashboards
from .orgs import PROM_UID, Org, orgs
from .panels import JSON, PG_TYPE, PROM

DEFAULT_SSLMODE = "disable"  # the local stack's PostgreSQL has no TLS


@dataclass(frozen=True)
class DatasourceSettings:
    host: str  # host:port of PostgreSQL as Grafana reaches it
    database: str
    passwords: Mapping[str, str]  # organisation key -> password of its audience's role
    prometheus_url: str
    # None: keep the sslmode the datasource has (a new one gets DEFAULT_SSLMODE).
    sslmode: str | None = None
    timescaledb: bool = True


def pg_datasource(org: Org, ds: DatasourceSettings, current: JSON | None) -> JSON:
    """The fields palliwatch manages of `org`'s PostgreSQL datasource."""
    json_data: JSON = {"database": ds.database, "timescaledb": ds.timescaledb}
    have = (current or {}).get("jsonData") or {}
    if ds.sslmode is not None:
        json_data["sslmode"] = ds.sslmode
    elif "sslmode" not in have:
        json_data["sslmode"] = DEFAULT_SSLMODE
    return {
        "uid": org.datasource_uid,
        "name": org.datasource_name,
        "type": PG_TYPE,
        "access": "proxy",
        "url": ds.host,
        "user": org.role,
        "jsonData": json_data,
    }


def prom_datasource(ds: DatasourceSettings) -> JSON:
    return {
        "uid": PROM_UID,
        "name": "prometheus",
        "type": PROM["type"],
        "access": "proxy",
        "url": ds.prometheus_url,
    }


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _seconds(text: str) -> int | None:
    m = _DURATION.match(text)
    if not m or not text:
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def project(current: Any, desired: Any) -> Any:
    """The part of `current` that `desired` specifies (Grafana's extra fields left out)."""
    if isinstance(desired, dict) and isinstance(current, dict):
        return {k: project(current.get(k), v) for k, v in desired.items()}
    if isinstance(desired, list) and isinstance(current, list) and len(desired) == len(current):
        return [project(c, d) for c, d in zip(current, desired, strict=True)]
    if isinstance(desired, str) and isinstance(current, str):
        # Grafana reports durations as 1h0m0s where we wrote 1h.
        a, b = _seconds(desired), _seconds(current)
        if a is not None and a == b:
            return desired
    return current


@dataclass
class Change:
    org: str
    kind: str
    name: str
    action: str  # create | update
    before: Any
    after: Any
    write: Callable[[], Any] = field(repr=False)

    def diff(self) -> str:
        a = json.dumps(self.before, indent=2, sort_keys=True).splitlines() if self.before else []
        b = json.dumps(self.after, indent=2, sort_keys=True).splitlines()
        label = f"[{self.org}] {self.kind} {self.name}"
        lines = difflib.unified_diff(a, b, f"grafana: {label}", f"palliwatch: {label}", lineterm="")
        return "\n".join(lines)


def _get(fn: Callable[[], Any]) -> Any:
    """The object, or None when Grafana answers 404."""
    try:
        return fn()
    except GrafanaClientError as e:
        if e.status_code == 404:
            return None
        raise


Connect = Callable[[int | None], GrafanaApi]


@dataclass
class OrgHandle:
    """An organisation in Grafana: its id once known (it may be created by an earlier write of
    the same plan) and a client bound to it, made when first used."""

    org: Org
    org_id: int | None
    connect: Connect = field(repr=False)
    _api: GrafanaApi | None = field(default=None, repr=False)

    def api(self) -> GrafanaApi:
        if self.org_id is None:
            raise RuntimeError(f"organisation {self.org.name!r} does not exist (yet)")
        if self._api is None:
            self._api = self.connect(self.org_id)
        return self._api

    def create(self, root: GrafanaApi) -> None:
        answer = root.organization.create_organization({"name": self.org.name})
        self.org_id = int(answer["orgId"])

    def call(self, element: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self.api(), element), method)(*args, **kwargs)

    def read(self, element: str, method: str, *args: Any) -> Any:
        """What Grafana has: nothing in an organisation that does not exist yet."""
        if self.org_id is None:
            return None
        return _get(partial(self.call, element, method, *args))

    def write(self, element: str, method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        return partial(self.call, element, method, *args, **kwargs)


def _compare(
    org: Org,
    kind: str,
    name: str,
    current: Any,
    desired: Any,
    create: Callable[[], Any],
    update: Callable[[], Any],
) -> list[Change]:
    if current is None:
        return [Change(org.name, kind, name, "create", None, desired, create)]
    before = project(current, desired)
    if before != desired:
        return [Change(org.name, kind, name, "update", before, desired, update)]
    return []


def _datasource_changes(h: OrgHandle, ds: DatasourceSettings) -> list[Change]:
    org = h.org
    changes: list[Change] = []
    current = h.read("datasource", "get_datasource_by_uid", org.datasource_uid)
    want = pg_datasource(org, ds, current)
    # Grafana replaces jsonData on an update: carry the fields palliwatch does not manage (the
    # operator's TLS settings among them) into the body, so they survive.
    have = (current or {}).get("jsonData") or {}
    body = {
        **want,
        "jsonData": {**have, **want["jsonData"]},
        "secureJsonData": {"password": ds.passwords[org.key]},
    }
    changes += _compare(
        org,
        "datasource",
        want["name"],
        current,
        want,
        h.write("datasource", "create_datasource", body),
        h.write("datasource", "update_datasource_by_uid", want["uid"], body),
    )
    if org.national:
        prom = prom_datasource(ds)
        changes += _compare(
            org,
            "datasource",
            prom["name"],
            h.read("datasource", "get_datasource_by_uid", prom["uid"]),
            prom,
            h.write("datasource", "create_datasource", prom),
            h.write("datasource", "update_datasource_by_uid", prom["uid"], prom),
        )
    return changes


def _dashboard_changes(h: OrgHandle) -> list[Change]:
    org = h.org
    folder = {"uid": alerts.FOLDER_UID, "title": alerts.FOLDER_TITLE}
    changes = _compare(
        org,
        "folder",
        folder["title"],
        h.read("folder", "get_folder", folder["uid"]),
        folder,
        h.write("folder", "create_folder", folder["title"], uid=folder["uid"]),
        h.write("folder", "update_folder", folder["uid"], title=folder["title"], overwrite=True),
    )
    for model in dashboards.org_dashboards(org).values():
        found = h.read("dashboard", "get_dashboard", model["uid"])
        current = None
        if found is not None:
            current = {
                "dashboard": found.get("dashboard"),
                "folderUid": (found.get("meta") or {}).get("folderUid"),
            }
        want = {"dashboard": model, "folderUid": alerts.FOLDER_UID}
        body = {**want, "overwrite": True, "message": "palliwatch grafana push"}
        post = h.write("dashboard", "update_dashboard", body)
        changes += _compare(org, "dashboard", model["title"], current, want, post, post)
    return changes


def _alerting_changes(h: OrgHandle, base_url: str) -> list[Change]:
    org = h.org
    changes: list[Change] = []
    prov = "alertingprovisioning"
    for group in alerts.rule_groups(base_url):
        rules = [
            {**r, "folderUID": alerts.FOLDER_UID, "ruleGroup": group["title"]}
            for r in group["rules"]
        ]
        want = {**group, "rules": rules}
        put = h.write(prov, "update_rule_group", alerts.FOLDER_UID, group["title"], want)
        current = h.read(prov, "get_rule_group", alerts.FOLDER_UID, group["title"])
        changes += _compare(org, "rule group", group["title"], current, want, put, put)

    # Contact points by uid, mute timings by name: (kind, objects, key, read, create, update).
    for kind, wanted, key, read, create, update in (
        ("contact point", alerts.contact_points(), "uid", "get_contactpoints",
         "create_contactpoint", "update_contactpoint"),
        ("mute timing", alerts.mute_timings(), "name", "get_mute_timings",
         "create_mute_timing", "update_mute_timing"),
    ):  # fmt: skip
        existing = {o.get(key): o for o in h.read(prov, read) or []}
        for obj in wanted:
            changes += _compare(
                org,
                kind,
                obj["name"],
                existing.get(obj[key]),
                obj,
                h.write(prov, create, obj),
                h.write(prov, update, obj[key], obj),
            )

    policy = alerts.notification_policy()
    put_policy = h.write(prov, "set_notification_policy_tree", policy)
    current_policy = h.read(prov, "get_notification_policy_tree")
    changes += _compare(
        org, "notification policy", "root", current_policy, policy, put_policy, put_policy
    )
    return changes


def plan(
    connect: Connect, ds: DatasourceSettings, base_url: str = alerts.DEFAULT_BASE_URL
) -> list[Change]:
    """Every change, in write order: an organisation before what goes into it; datasources and
    folder before dashboards and rules; contact points and mute timings before the policy tree
    that names them."""
    root = connect(None)
    existing = {o["name"]: int(o["id"]) for o in root.organizations.list_organization()}
    changes: list[Change] = []
    for org in orgs():
        h = OrgHandle(org, existing.get(org.name), connect)
        if h.org_id is None:
            changes.append(
                Change(
                    org.name,
                    "organisation",
                    org.name,
                    "create",
                    None,
                    {"name": org.name},
                    partial(h.create, root),
                )
            )
        changes += _datasource_changes(h, ds)
        changes += _dashboard_changes(h)
        if org.national:
            changes += _alerting_changes(h, base_url)
    return changes


def apply(changes: list[Change]) -> None:
    """Write in plan order (see plan())."""
    for c in changes:
        c.write()


def connect(url: str, credential: tuple[str, str], timeout: float = 10.0) -> Connect:
    """A factory of clients: without an organisation id for server-wide calls (organisations),
    with one for the calls inside that organisation (the X-Grafana-Org-Id header, which
    grafana-client sets for its organization_id)."""

    def make(org_id: int | None) -> GrafanaApi:
        api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
        if org_id is not None:
            api.client.organization_id = org_id
            api.client.s.headers["X-Grafana-Org-Id"] = str(org_id)
        return api

    return make
