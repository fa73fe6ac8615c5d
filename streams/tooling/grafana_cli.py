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
    from grafana.orgs import orgs

    if not args.url:
        raise SystemExit("--url (or GRAFANA_URL) is required")
    env = os.environ.get
    ds = push_mod.DatasourceSettings(
        host=args.db_host or f"127.0.0.1:{settings_mod.load().local_pg_port}",
        database=args.db_name,
        # Each organisation's role password: PALLIWATCH_GRAFANA_DB_PASSWORD_<ORG>, else the
        # local stack's loopback-only one.
        passwords={
            org.key: env(org.password_env) or settings_mod.local_password(org.role)
            for org in orgs()
        },
        prometheus_url=args.prometheus_url,
        sslmode=args.db_sslmode or None,
        timescaledb=not args.no_timescaledb,
    )
    if not args.user:
        raise SystemExit("--user and --password (or GRAFANA_USER, GRAFANA_PASSWORD) are required")
    connect = push_mod.connect(args.url, (args.user, args.password or ""))
    try:
        changes = push_mod.plan(connect, ds, args.base_url or args.url.rstrip("/"))
    except Exception as e:  # grafana-client raises its own and niquests' errors
        raise SystemExit(f"Grafana at {args.url} refused or is unreachable: {e}") from e
    for c in changes:
        print(f"{c.action:6} [{c.org}] {c.kind}: {c.name}")
        if args.dry_run:
            print(c.diff())
    if not changes:
        print("Grafana is up to date: nothing to change")
        return
    if args.dry_run:
        print(f"dry run: {len(changes)} change(s) not applied")
        return
    try:
        push_mod.apply(changes)
    except Exception as e:
        raise SystemExit(f"Grafana at {args.url} refused a change: {e}") from e
    print(f"applied {len(changes)} change(s)")


def register(sub: Any) -> None:
    """Add the `grafana` subcommand to the palliwatch CLI's subparsers."""
    env = os.environ.get
    sp = sub.add_parser("grafana", help="build, check or push dashboards and alert rules")
    sp.add_argument("action", choices=("build", "check", "push"))
    sp.add_argument("--url", default=env("GRAFANA_URL"), help="Grafana base URL (push)")
    sp.add_argument(
        "--user",
        default=env("GRAFANA_USER"),
        help="a Grafana server admin (push creates the organisations and works in each; a "
        "service-account token cannot: Grafana binds it to one organisation)",
    )
    sp.add_argument("--password", default=env("GRAFANA_PASSWORD"), help="its password")
    sp.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    sp.add_argument(
        "--base-url",
        default=None,
        help="Grafana URL used in alert drill-down links (build: default "
        "http://localhost:3000; push: --url)",
    )
    sp.add_argument(
        "--db-host",
        default=env("PALLIWATCH_GRAFANA_DB_HOST"),
        help="PostgreSQL host:port as Grafana reaches it (default: the local stack's)",
    )
    sp.add_argument("--db-name", default=settings_mod.LOCAL_DB_NAME)
    sp.add_argument(
        "--db-sslmode",
        default=env("PALLIWATCH_GRAFANA_DB_SSLMODE"),
        choices=("disable", "require", "verify-ca", "verify-full"),
        help="TLS mode of the PostgreSQL datasources; unset: a new datasource gets disable, an "
        "existing one keeps its own",
    )
    sp.add_argument(
        "--prometheus-url", default=env("PALLIWATCH_PROMETHEUS_URL", "http://127.0.0.1:9090")
    )
    sp.add_argument("--no-timescaledb", action="store_true")
    sp.set_defaults(func=cmd_grafana)
