"""`palliwatch grafana build|check|push`: dashboards and alerts as code (grafana/)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from streams import settings as settings_mod

DEFAULT_BASE_URL = "http://localhost:3000"  # grafana.alerts.DEFAULT_BASE_URL (imported lazily)


def cmd_grafana(args: argparse.Namespace) -> None:
    from grafana import build

    if args.action == "build":
        changed = build.write(args.base_url or DEFAULT_BASE_URL)
        for p in changed:
            print(f"wrote {p.relative_to(settings_mod.REPO_ROOT)}")
        print(f"{len(changed)} file(s) changed")
        return
    if args.action == "check":
        stale = build.drift()
        for p in stale:
            print(f"out of date: {p.relative_to(settings_mod.REPO_ROOT)}", file=sys.stderr)
        if stale:
            print("run `palliwatch grafana build` and commit the result", file=sys.stderr)
            raise SystemExit(1)
        print("grafana artefacts up to date")
        return
    push(args)


def push(args: argparse.Namespace) -> None:
    from grafana import push as push_mod

    if not args.url:
        raise SystemExit("--url (or GRAFANA_URL) is required")
    ds = push_mod.DatasourceSettings(
        host=args.db_host,
        database=args.db_name,
        user=settings_mod.LOCAL_DB_READER,
        password=args.db_reader_password,
        prometheus_url=args.prometheus_url,
        timescaledb=not args.no_timescaledb,
    )
    api = push_mod.connect(args.url, args.token)
    try:
        changes = push_mod.plan(api, ds, args.base_url or args.url.rstrip("/"))
    except Exception as e:  # grafana-client raises its own and niquests' errors
        raise SystemExit(f"Grafana at {args.url} refused or is unreachable: {e}") from e
    for c in changes:
        print(f"{c.action:6} {c.kind}: {c.name}")
        if args.dry_run:
            print(c.diff())
    if not changes:
        print("Grafana is up to date: nothing to change")
        return
    if args.dry_run:
        print(f"dry run: {len(changes)} change(s) not applied")
        return
    push_mod.apply(changes)
    print(f"applied {len(changes)} change(s)")


def register(sub: Any) -> None:
    """Add the `grafana` subcommand to the palliwatch CLI's subparsers."""
    env = os.environ.get
    sp = sub.add_parser("grafana", help="build, check or push dashboards and alert rules")
    sp.add_argument("action", choices=("build", "check", "push"))
    sp.add_argument("--url", default=env("GRAFANA_URL"), help="Grafana base URL (push)")
    sp.add_argument("--token", default=env("GRAFANA_TOKEN"), help="service account token")
    sp.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    sp.add_argument(
        "--base-url",
        default=None,
        help="Grafana URL used in alert drill-down links (build: default "
        "http://localhost:3000; push: --url)",
    )
    sp.add_argument(
        "--db-host",
        default=env("PALLIWATCH_GRAFANA_DB_HOST", f"127.0.0.1:{settings_mod.LOCAL_PG_PORT}"),
        help="PostgreSQL host:port as Grafana reaches it",
    )
    sp.add_argument("--db-name", default=settings_mod.LOCAL_DB_NAME)
    sp.add_argument(
        "--db-reader-password",
        default=env("PALLIWATCH_DB_READER_PASSWORD", settings_mod.LOCAL_DB_READER_PASSWORD),
        help="password of the read-only role (sent when the datasource is created or changed)",
    )
    sp.add_argument(
        "--prometheus-url", default=env("PALLIWATCH_PROMETHEUS_URL", "http://127.0.0.1:9090")
    )
    sp.add_argument("--no-timescaledb", action="store_true")
    sp.set_defaults(func=cmd_grafana)
