"""The `palliwatch` command line."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from streams import settings as settings_mod
from streams.tooling.grafana_cli import register as register_grafana


def _fail(msg: str, code: int = 2) -> None:
    print(f"palliwatch: {msg}", file=sys.stderr)
    raise SystemExit(code)


# ---- services / db / topics ----------------------------------------------------------------


def cmd_services(args: argparse.Namespace) -> None:
    from streams.tooling import services

    s = settings_mod.load()
    try:
        if args.action == "up":
            services.up(s)
        elif args.action == "down":
            services.down(s)
        else:
            st = services.status(s)
            for name, ok in st.items():
                print(f"{name:9s} {'up' if ok else 'DOWN'}")
            if not all(st.values()):
                raise SystemExit(1)
    except services.ServiceError as e:
        _fail(str(e), 1)


def cmd_db(args: argparse.Namespace) -> None:
    from processors.db import DatabaseUnavailable, migrate

    if args.action == "roles":
        _db_roles()
        return
    try:
        applied = migrate(settings_mod.load().database)
    except DatabaseUnavailable as e:
        _fail(str(e), 1)
    print("applied: " + ", ".join(applied) if applied else "database schema is up to date")


def _db_roles() -> None:
    """The reader roles of every audience, with the passwords their Grafana datasources use
    (the same environment variables, or files named by NAME_FILE: Docker secrets), for a
    database whose owner may create roles."""
    import psycopg

    from grafana.orgs import orgs
    from processors import access
    from processors.db import DatabaseUnavailable, connect

    passwords, missing = {}, []
    for org in orgs():
        # settings.secret(): NAME_FILE's content if set (unreadable: exit naming it), else NAME.
        value = settings_mod.secret(org.password_env).decode()
        if value:
            passwords[org.audience.role] = value
        else:
            missing.append(org.password_env)
    if missing:
        _fail(
            "set the reader roles' passwords first (each NAME, or NAME_FILE naming a file "
            f"that holds it): {', '.join(missing)}",
            2,
        )
    try:
        s = settings_mod.load()
        with connect(s.database, owner=True, autocommit=True) as conn:
            created, notices = access.create_roles(conn, passwords, s.db_writer_role)
    except DatabaseUnavailable as e:
        _fail(str(e), 1)
    except psycopg.errors.InsufficientPrivilege as e:
        _fail(f"the database role may not create roles ({e}): run this as a role with "
              "CREATEROLE, or create the roles in schemas/audiences.py yourself", 1)  # fmt: skip
    for notice in notices:  # as `db migrate` logs its own
        logging.getLogger("palliwatch.db").warning("%s", notice)
    print(f"reader roles ready ({len(passwords)}); created: {', '.join(created) or 'none'}")


def cmd_topics(args: argparse.Namespace) -> None:
    from streams.tooling.kafka_admin import KafkaUnavailable, ensure_topics

    try:
        created = ensure_topics(settings_mod.load())
    except KafkaUnavailable as e:
        _fail(str(e), 1)
    print("created: " + ", ".join(created) if created else "all catalogue topics exist")


# ---- simulate ------------------------------------------------------------------------------


def _parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"rate must look like 50/s, got {text!r}")
    return float(m.group(1))


def run_backfill(n: int, months: int, seed: int, progress: bool = True) -> int:
    from tqdm import tqdm

    from schemas.topics import DEATH_SURVEYS, OFFICIAL_DEATHS, POPULATION, UNIT_EVENTS
    from streams.tooling.producer import make_producer, send_records
    from streams.tooling.simulator import (
        SurveyFactory,
        complete_months_before,
        official_deaths_records,
        population_records,
        unit_events_records,
    )

    s = settings_mod.load()
    now = datetime.now(UTC)
    month_list = complete_months_before(now, months)
    producer = make_producer(s)
    try:
        send_records(producer, s, OFFICIAL_DEATHS, official_deaths_records(month_list, now))
        # Structure: the units and residents behind the beds, staff and white-spot indicators.
        years = sorted({int(m[:4]) for m in month_list} | {now.year})
        send_records(producer, s, POPULATION, population_records(years))
        send_records(producer, s, UNIT_EVENTS, unit_events_records())
        factory = SurveyFactory(seed=seed)
        with tqdm(
            total=n, unit="survey", disable=not progress, desc="backfill", mininterval=1.0
        ) as bar:
            # The bar counts surveys; corrections and withdrawals ride along uncounted.
            sent = send_records(
                producer,
                s,
                DEATH_SURVEYS,
                factory.backfill(n, month_list, now),
                on_sent=lambda rec: bar.update(1 if rec["revision"] == 1 else 0),
            )
    finally:
        producer.close()
    return sent


def run_live(rate: float, duration: float | None, seed: int, quiet: bool = False) -> int:
    from collections import deque

    import orjson

    from schemas.topics import DEATH_SURVEYS
    from streams.tooling.producer import make_producer, raise_failed, record_key
    from streams.tooling.simulator import SurveyFactory, live_id_prefix

    s = settings_mod.load()
    producer = make_producer(s)
    factory = SurveyFactory(seed=seed, id_prefix=live_id_prefix(time.time()))
    recent: deque[dict[str, Any]] = deque(maxlen=1000)
    failures: list[BaseException] = []
    sent = 0
    started = time.monotonic()
    try:
        while duration is None or time.monotonic() - started < duration:
            tick = time.monotonic()
            for _ in range(max(1, round(rate))):
                now = datetime.now(UTC)
                survey = factory.live(now)
                batch = [survey]
                if recent and factory.rng.random() < 0.04:
                    # A correction of a survey registered a little earlier.
                    follow = factory.follow_up(recent[factory.rng.randrange(len(recent))])
                    if follow is not None:
                        follow["submitted_at"] = now.isoformat().replace("+00:00", "Z")
                        batch.append(follow)
                for rec in batch:
                    producer.send(
                        s.topic(DEATH_SURVEYS),
                        key=record_key(DEATH_SURVEYS, rec),
                        value=orjson.dumps(rec),
                    ).add_errback(failures.append)
                    sent += 1
                recent.append(survey)
            producer.flush()
            raise_failed(failures, s, s.topic(DEATH_SURVEYS))
            if not quiet and sent and sent % (max(1, round(rate)) * 10) < max(1, round(rate)):
                print(f"[simulate] {sent} surveys sent", flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        pass
    finally:
        producer.close()
    return sent


def cmd_simulate(args: argparse.Namespace) -> None:
    from streams.tooling.kafka_admin import KafkaUnavailable, ensure_topics

    try:
        ensure_topics(settings_mod.load())
        if args.backfill:
            sent = run_backfill(args.backfill, args.months, args.seed)
            print(f"backfill: {sent} survey records sent ({args.months} months of deaths)")
        if args.rate:
            sent = run_live(args.rate, args.duration, args.seed)
            print(f"live: {sent} survey records sent")
        if not args.backfill and not args.rate:
            _fail("give --backfill N, --rate N/s, or both")
    except KafkaUnavailable as e:
        _fail(str(e), 1)


# ---- worker --------------------------------------------------------------------------------


def preflight(s: settings_mod.Settings, migrated: bool = True) -> None:
    """Before the worker starts: topics exist, the database answers and (``migrated``) is
    migrated."""
    from processors.db import DatabaseUnavailable, pending_migrations
    from streams.kafka_clients import check_group_access
    from streams.tooling.kafka_admin import KafkaUnavailable, ensure_topics

    try:
        ensure_topics(s)  # also: we may log in, see and create our topics
        check_group_access(s, s.app_id)
    except KafkaUnavailable as e:
        _fail(str(e), 1)
    try:
        pending = pending_migrations(s.database)
    except DatabaseUnavailable as e:
        _fail(str(e), 1)
    if pending and migrated:
        _fail(
            f"database schema is behind ({', '.join(pending)} not applied): "
            "run `palliwatch db migrate`",
            1,
        )


def tune_garbage_collector() -> None:
    """The worker allocates millions of short-lived objects (records, rows, deltas) next to a
    heap of long-lived ones (modules, Faust, state). Python's default thresholds collect the
    young generation every 700 allocations and rescan everything every 70 000: on a
    microbenchmark of building a batch's deltas, collections took four times the work. Everything
    alive after start-up is frozen out of the scans, and collections run less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def cmd_worker(args: argparse.Namespace) -> None:
    import faust

    from streams import logs

    preflight(settings_mod.load())
    from streams.worker import start

    app = start()
    tune_garbage_collector()
    worker = faust.Worker(
        app,
        loglevel=args.loglevel,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logs.worker_logging_config(args.loglevel),  # PALLIWATCH_LOG_FORMAT
    )
    worker.execute_from_commandline()


def cmd_bench(args: argparse.Namespace) -> None:
    import json

    from processors.db import DatabaseUnavailable
    from streams.tooling.bench import bench_storage

    if args.target == "screen":
        from streams.tooling.bench_screen import bench_screen

        results = bench_screen(repeats=args.runs * 3, normal=args.surveys_screened)
        out = settings_mod.load().state_dir / "bench-screen.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"[bench] written to {out}")
        return
    if args.target == "pipeline":
        from streams.tooling.bench_pipeline import bench_pipeline, print_results

        s = settings_mod.load()
        preflight(s, migrated=False)  # the bench migrates a database of its own
        results = bench_pipeline(
            s, surveys=args.surveys, months=args.months, live_seconds=args.live_seconds,
            rate=args.rate, profile=args.profile,
        )  # fmt: skip
        out = s.state_dir / "bench-pipeline.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        print_results(results, out)
        return
    try:
        results = bench_storage(settings_mod.load(), years=args.years, runs=args.runs)
    except DatabaseUnavailable as e:
        _fail(str(e), 1)
    out = settings_mod.load().state_dir / "bench-storage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"[bench] written to {out}")


def cmd_schemas(args: argparse.Namespace) -> None:
    from schemas.export import drifted, export

    if args.action == "export":
        written = export()
        print("wrote: " + ", ".join(p.name for p in written) if written else "schemas up to date")
    else:
        stale = drifted()
        if stale:
            _fail(
                f"JSON Schema files differ from the models: {', '.join(stale)}; run "
                "`palliwatch schemas export`",
                1,
            )
        print("JSON Schema files match the models")


# ---- dead letters -------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace) -> None:
    from processors.validation import REASON_MEANINGS
    from streams.tooling import dlq
    from streams.tooling.kafka_admin import KafkaUnavailable

    s = settings_mod.load()
    try:
        if args.action == "list":
            summary = dlq.list_dead_letters(s, samples=args.samples)
            print(f"{summary.total} dead letters in {s.topic(dlq.DEAD_LETTER)}")
            for reason, count in summary.by_reason.most_common():
                meaning = REASON_MEANINGS.get(reason, "")  # type: ignore[call-overload]
                print(f"\n{reason}: {count}  ({meaning})")
                for letter in summary.newest[reason]:
                    print(
                        f"  {letter['received_at'][:19]}  {letter['source_topic']}"
                        f"[{letter['source_partition']}]@{letter['source_offset']}  "
                        f"{letter['detail'][:160]}"
                    )
        else:
            if not args.reason:
                _fail("dlq replay needs --reason R (see `palliwatch dlq list`)")
            result = dlq.replay(s, args.reason, dry_run=args.dry_run)
            verb = "would replay" if args.dry_run else "replayed"
            print(
                f"{verb} {result.replayed} dead letters with reason {args.reason}; "
                f"{result.skipped_not_replayable} not replayable (redacted or truncated)"
            )
    except (KafkaUnavailable, dlq.ReplayFailed) as e:
        _fail(str(e), 1)
    except ValueError as e:
        _fail(str(e))


# ---- indicators ----------------------------------------------------------------------------


def _pct(cell: Any) -> str:
    if cell is None:
        return "-"
    if cell.suppressed:
        return "n<5"
    return "-" if cell.value is None else f"{100 * cell.value:5.1f}%"


def _num(cell: Any) -> str:
    if cell is None:
        return "-"
    if cell.suppressed:
        return "n<5"
    return "-" if cell.value is None else f"{cell.value:,.0f}".replace(",", " ")


def format_indicator_table(rows: list[Any]) -> str:
    from processors.catalogue import default_catalogue
    from schemas.codes import regions

    names = regions()
    # The catalogue's `summary` indicators, headed by their short titles: people as counts,
    # everything else as a percentage.
    columns = [
        (i.id, i.short_en, max(7, len(i.short_en) + 1), _num if i.unit == "people" else _pct)
        for i in default_catalogue().tagged("summary")
    ]
    header = f"{'region':22s} {'period (rolling 12 m)':23s} " + " ".join(
        f"{label:>{width}s}" for _, label, width, _ in columns
    )
    lines = [header, "-" * len(header)]
    by_code = {r.region_code: r for r in rows}
    for code, region in names.items():
        r = by_code.get(code)
        label = f"{code} {region.name}"[:22]
        if r is None:
            lines.append(f"{label:22s} {'(no data yet)':23s}")
            continue
        c = r.cells
        lines.append(
            f"{label:22s} {r.period_start:%Y-%m}..{r.period_end:%Y-%m}        "
            + " ".join(f"{show(c.get(ind)):>{width}s}" for ind, _, width, show in columns)
        )
    return "\n".join(lines)


def print_indicators() -> int:
    from processors.db import connect
    from processors.queries import current_region_values

    with connect(settings_mod.load().database) as conn:
        rows = current_region_values(conn)
    print(format_indicator_table(rows), flush=True)
    return len(rows)


def cmd_indicators(args: argparse.Namespace) -> None:
    from processors.db import DatabaseUnavailable

    try:
        print_indicators()
    except DatabaseUnavailable as e:
        _fail(str(e), 1)


# ---- demo ----------------------------------------------------------------------------------


def _worker_accounted(port: int) -> float:
    """Survey records the worker has settled: valid, stale or dead letters."""
    from schemas.topics import DEATH_SURVEYS
    from streams.tooling.scrape import scrape

    m = scrape(port)
    if m is None:
        return 0.0
    return (
        m.total("palliwatch_valid_total", topic=DEATH_SURVEYS.name)
        + m.total("palliwatch_stale_revisions_total")
        + m.total("palliwatch_dead_letters_total", topic=DEATH_SURVEYS.name)
    )


def wait_for_worker(s: settings_mod.Settings, sent: int, worker: Any, log_path: Any) -> None:
    """Show the worker working through the backfill; return when every record is accounted for."""
    from tqdm import tqdm

    with tqdm(total=sent, unit="record", desc="worker", mininterval=1.0) as bar:
        done = 0.0
        while done < sent:
            if worker.poll() is not None:
                _fail(f"the worker exited with {worker.returncode}; see {log_path}", 1)
            done = _worker_accounted(s.web_port)
            bar.update(max(0, int(done) - bar.n))
            time.sleep(1)
    time.sleep(3)  # the last aggregation batch


class DemoWorker:
    """The demo's worker process, started again when it stops itself (exit 70: a failure that
    was not one record's fault, nothing of it committed; streams/failures.py), as systemd or
    Kubernetes would restart it. Any other exit ends the demo."""

    MAX_RESTARTS = 5

    def __init__(self, log_path: Any, settings: settings_mod.Settings) -> None:
        self.log_path = log_path
        self.env = settings_mod.child_env(settings)
        self.restarts = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "streams.tooling.cli", "worker"],
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def poll(self) -> int | None:
        from streams.failures import EXIT_FATAL

        code = self.proc.poll()
        if code == EXIT_FATAL and self.restarts < self.MAX_RESTARTS:
            self.restarts += 1
            print(
                f"[demo] the worker stopped itself (exit {code}, see {self.log_path}); "
                f"restarting it ({self.restarts}/{self.MAX_RESTARTS})",
                flush=True,
            )
            self.proc = self._start()
            return None
        return code

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()


def cmd_demo(args: argparse.Namespace) -> None:
    """Services up, migrate, topics, worker, backfill, live stream, indicators until stopped."""
    from processors.db import migrate
    from streams.tooling import services
    from streams.tooling.kafka_admin import ensure_topics

    s = settings_mod.load()
    try:
        services.up(s)
    except services.ServiceError as e:
        _fail(str(e), 1)
    migrate(s.database)
    ensure_topics(s)
    log_path = s.state_dir / "worker.log"
    print(f"[demo] starting the worker (log: {log_path})", flush=True)
    worker = DemoWorker(log_path, s)
    try:
        print(f"[demo] backfilling {args.backfill} surveys over 12 months ...", flush=True)
        sent = run_backfill(args.backfill, 12, args.seed)
        wait_for_worker(s, sent, worker, log_path)
        # The bound covers the live phase, so a short run still shows live tables.
        stop_at = None if not args.duration else time.monotonic() + args.duration
        print(
            f"[demo] live stream at {args.rate:g}/s; indicators every {args.every}s. Ctrl-C stops.",
            flush=True,
        )
        while stop_at is None or time.monotonic() < stop_at:
            remaining = None if stop_at is None else max(0.0, stop_at - time.monotonic())
            chunk = args.every if remaining is None else min(args.every, remaining)
            if chunk <= 0:
                break
            run_live(args.rate, chunk, args.seed, quiet=True)
            if worker.poll() is not None:
                _fail(f"the worker exited with {worker.returncode}; see {log_path}", 1)
            print(f"\n[demo] {datetime.now(UTC):%H:%M:%S} UTC", flush=True)
            print_indicators()
    except KeyboardInterrupt:
        print("\n[demo] stopping ...", flush=True)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    print("[demo] done; services keep running (`palliwatch services down` stops them)")


# ---- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="palliwatch",
        description="Live palliative-care quality indicators from registry events",
    )
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("services", help="start, stop or check the local Kafka and PostgreSQL")
    sp.add_argument("action", choices=("up", "down", "status"))
    sp.set_defaults(func=cmd_services)

    sp = sub.add_parser("db", help="database administration")
    sp.add_argument(
        "action", choices=("migrate", "roles"),
        help="migrate: apply migrations and every grant, as the schema owner "
        "(PALLIWATCH_OWNER_DATABASE_URL); roles: create the reader and audit roles (passwords "
        "from PALLIWATCH_GRAFANA_DB_PASSWORD_<ORG>, or the file <ORG>_FILE names; needs "
        "CREATEROLE)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_db)

    sp = sub.add_parser("topics", help="create the catalogue's topics")
    sp.add_argument("action", choices=("create",))
    sp.set_defaults(func=cmd_topics)

    sp = sub.add_parser("simulate", help="produce realistic synthetic registry events")
    sp.add_argument("--backfill", type=int, metavar="N", help="N surveys of past deaths")
    sp.add_argument("--months", type=int, default=12, help="months of history for --backfill")
    sp.add_argument("--rate", type=_parse_rate, metavar="N/s", help="live surveys per second")
    sp.add_argument("--duration", type=float, metavar="S", help="stop live mode after S seconds")
    sp.add_argument("--seed", type=int, default=1)
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("worker", help="run the Faust stream processor")
    sp.add_argument("--loglevel", default=os.environ.get("PALLIWATCH_LOGLEVEL", "info"))
    sp.set_defaults(func=cmd_worker)

    sp = sub.add_parser("bench", help="benchmarks that print figures")
    sp.add_argument("target", choices=("storage", "pipeline", "screen"))
    sp.add_argument("--years", type=int, default=10, help="storage: years of indicator rows")
    sp.add_argument("--runs", type=int, default=5, help="storage: repetitions")
    sp.add_argument("--surveys", type=int, default=1_000_000, help="pipeline: backfill size")
    sp.add_argument("--months", type=int, default=24, help="pipeline: months of deaths")
    sp.add_argument("--live-seconds", type=float, default=60.0, help="pipeline: live phase")
    sp.add_argument("--rate", type=float, default=200.0, help="pipeline: live surveys per second")
    sp.add_argument(
        "--profile",
        action="store_true",
        help="pipeline: sample the worker with py-spy and print its CPU by stage (µs per survey)",
    )
    sp.add_argument(
        "--surveys-screened", type=int, default=3000, help="screen: normal surveys timed"
    )
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("schemas", help="export or check the JSON Schema files of the contracts")
    sp.add_argument("action", choices=("export", "check"))
    sp.set_defaults(func=cmd_schemas)

    sp = sub.add_parser("dlq", help="inspect or replay dead letters")
    sp.add_argument("action", choices=("list", "replay"))
    sp.add_argument("--reason", help="replay only dead letters with this reason")
    sp.add_argument("--samples", type=int, default=3, help="newest samples per reason (list)")
    sp.add_argument("--dry-run", action="store_true", help="count what replay would send")
    sp.set_defaults(func=cmd_dlq)

    sp = sub.add_parser("indicators", help="print current indicators for the 21 regions")
    sp.set_defaults(func=cmd_indicators)

    sp = sub.add_parser("demo", help="the live demo on the local stack")
    sp.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("DURATION") or 0),
        help="stop S seconds into the live phase (default: until Ctrl-C; env DURATION)",
    )
    sp.add_argument("--backfill", type=int, default=60000)
    sp.add_argument("--rate", type=_parse_rate, default=50.0)
    sp.add_argument("--every", type=float, default=10.0, help="seconds between tables")
    sp.add_argument("--seed", type=int, default=1)
    sp.set_defaults(func=cmd_demo)
    register_grafana(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    from streams import logs

    logs.configure_cli(logging.WARNING)  # text, or JSON lines with PALLIWATCH_LOG_FORMAT=json
    # kafka-python logs every reconnect attempt at ERROR; our own messages say what to do.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    args = build_parser().parse_args(argv)
    from kafka.errors import KafkaError

    from streams.kafka_clients import KafkaUnavailable, explain

    try:
        args.func(args)
    except KafkaUnavailable as e:
        _fail(str(e), 1)
    except KafkaError as e:  # a refusal no command expected: still one line, naming the fix
        _fail(explain(e, settings_mod.load()), 1)


if __name__ == "__main__":
    main()
