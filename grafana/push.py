"""Apply the generated artefacts to a running Grafana through its HTTP API (grafana-client).

`plan()` reads what Grafana has and compares it with what palliwatch wants, object by object,
looking only at the fields palliwatch sets (Grafana adds ids, versions, provenance and defaults
of its own). `apply()` writes only the objects that differ, so a second run changes nothing;
`--dry-run` prints the plan as unified diffs and writes nothing.

Objects: the PostgreSQL datasource (read-only role) and the Prometheus one, the palliwatch
folder, the four dashboards, the two alert rule groups, the contact points, the mute timing and
the notification policy tree (the whole tree of the organisation: Grafana has one per org).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from . import alerts, dashboards
from .panels import JSON, PG, PROM


@dataclass(frozen=True)
class DatasourceSettings:
    host: str  # host:port of PostgreSQL as Grafana reaches it
    database: str
    user: str
    password: str
    prometheus_url: str
    timescaledb: bool = True


def desired_datasources(ds: DatasourceSettings) -> list[JSON]:
    return [
        {
            "uid": PG["uid"],
            "name": "palliwatch",
            "type": PG["type"],
            "access": "proxy",
            "url": ds.host,
            "user": ds.user,
            "jsonData": {
                "database": ds.database,
                "sslmode": "disable",
                "timescaledb": ds.timescaledb,
            },
        },
        {
            "uid": PROM["uid"],
            "name": "prometheus",
            "type": PROM["type"],
            "access": "proxy",
            "url": ds.prometheus_url,
        },
    ]


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
    kind: str
    name: str
    action: str  # create | update
    before: Any
    after: Any
    write: Callable[[], Any] = field(repr=False)

    def diff(self) -> str:
        a = json.dumps(self.before, indent=2, sort_keys=True).splitlines() if self.before else []
        b = json.dumps(self.after, indent=2, sort_keys=True).splitlines()
        label = f"{self.kind} {self.name}"
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


def _compare(
    kind: str,
    name: str,
    current: Any,
    desired: Any,
    create: Callable[[], Any],
    update: Callable[[], Any],
) -> list[Change]:
    if current is None:
        return [Change(kind, name, "create", None, desired, create)]
    before = project(current, desired)
    if before != desired:
        return [Change(kind, name, "update", before, desired, update)]
    return []


def plan(
    api: GrafanaApi, ds: DatasourceSettings, base_url: str = alerts.DEFAULT_BASE_URL
) -> list[Change]:
    prov = api.alertingprovisioning
    changes: list[Change] = []

    for want in desired_datasources(ds):
        secure = {"secureJsonData": {"password": ds.password}} if want["uid"] == PG["uid"] else {}
        body = {**want, **secure}
        changes += _compare(
            "datasource",
            want["name"],
            _get(partial(api.datasource.get_datasource_by_uid, want["uid"])),
            want,
            partial(api.datasource.create_datasource, body),
            partial(api.datasource.update_datasource_by_uid, want["uid"], body),
        )

    folder = {"uid": alerts.FOLDER_UID, "title": alerts.FOLDER_TITLE}
    changes += _compare(
        "folder",
        folder["title"],
        _get(partial(api.folder.get_folder, folder["uid"])),
        folder,
        partial(api.folder.create_folder, folder["title"], uid=folder["uid"]),
        partial(api.folder.update_folder, folder["uid"], title=folder["title"], overwrite=True),
    )

    for model in dashboards.all_dashboards().values():
        found = _get(partial(api.dashboard.get_dashboard, model["uid"]))
        current = None
        if found is not None:
            current = {
                "dashboard": found.get("dashboard"),
                "folderUid": (found.get("meta") or {}).get("folderUid"),
            }
        want = {"dashboard": model, "folderUid": alerts.FOLDER_UID}
        body = {**want, "overwrite": True, "message": "palliwatch grafana push"}
        post = partial(api.dashboard.update_dashboard, body)
        changes += _compare("dashboard", model["title"], current, want, post, post)

    for group in alerts.rule_groups(base_url):
        rules = [
            {**r, "folderUID": alerts.FOLDER_UID, "ruleGroup": group["title"]}
            for r in group["rules"]
        ]
        want = {**group, "rules": rules}
        put = partial(prov.update_rule_group, alerts.FOLDER_UID, group["title"], want)
        current = _get(partial(prov.get_rule_group, alerts.FOLDER_UID, group["title"]))
        changes += _compare("rule group", group["title"], current, want, put, put)

    existing_cps = {cp.get("uid"): cp for cp in prov.get_contactpoints()}
    for cp in alerts.contact_points():
        changes += _compare(
            "contact point",
            cp["name"],
            existing_cps.get(cp["uid"]),
            cp,
            partial(prov.create_contactpoint, cp),
            partial(prov.update_contactpoint, cp["uid"], cp),
        )

    existing_mutes = {m.get("name"): m for m in prov.get_mute_timings()}
    for mt in alerts.mute_timings():
        changes += _compare(
            "mute timing",
            mt["name"],
            existing_mutes.get(mt["name"]),
            mt,
            partial(prov.create_mute_timing, mt),
            partial(prov.update_mute_timing, mt["name"], mt),
        )

    policy = alerts.notification_policy()
    put_policy = partial(prov.set_notification_policy_tree, policy)
    current_policy = prov.get_notification_policy_tree()
    changes += _compare(
        "notification policy", "root", current_policy, policy, put_policy, put_policy
    )
    return changes


def apply(changes: list[Change]) -> None:
    """Write in plan order: datasources and folder before dashboards and rules, contact points
    and mute timings before the policy tree that names them."""
    for c in changes:
        c.write()


def connect(url: str, token: str | None, timeout: float = 10.0) -> GrafanaApi:
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)
