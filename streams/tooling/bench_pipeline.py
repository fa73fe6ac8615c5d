"""`palliwatch bench pipeline`: the whole worker, measured on the real local broker and database.

1. Backfill: N simulated surveys (with their corrections and withdrawals), official deaths,
   units and population are produced to a fresh topic namespace first; then one worker starts
   and works through them. Throughput = survey records in the topic (what the raw consumer read:
   the topic is compacted, so a survey's superseded revisions may be cleaned away in a large
   run) / time from the worker's first consumed
   record to the moment its consumer group has committed every input partition to its end and
   no scope has evaluation pending (read from the group's committed offsets and the worker's
   /metrics). The raw aiokafka consume rate of the same survey topic, measured in the same run,
   is the ceiling; the ratio between the two is printed.
2. Live latency: surveys produced at a steady rate (default 200/s) with submitted_at = now;
   p50/p99 from submission to durable headline rows (palliwatch_processing_latency_seconds)
   and to every row (palliwatch_complete_latency_seconds), from the worker's histograms
   (differences before/after the live phase; interpolated within buckets).
3. Peak RSS of the worker process (VmHWM).
Figures are printed and written to .palliwatch/bench-pipeline.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

from processors.db import drop_database, migrate
from schemas.topics import (
    CATALOGUE,
    DEAD_LETTER,
    DEATH_SURVEYS,
    OFFICIAL_DEATHS,
    POPULATION,
    UNIT_EVENTS,
)
from streams import kafka_clients
from streams.settings import REPO_ROOT, Settings, child_env
from streams.tooling import profile as worker_profile
from streams.tooling.kafka_admin import delete_run_topics, ensure_topics
from streams.tooling.scrape import Scrape, scrape


@dataclasses.dataclass
class Run:
    settings: Settings
    env: dict[str, str]  # child_env(worker)
    db_name: str
    admin_url: str
    worker: Settings


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(base: Settings) -> Run:
    tag = "bench" + uuid.uuid4().hex[:8]
    db_name = f"palliwatch_{tag}"
    # As a deployment: the owner makes and migrates the database, the worker writes as the writer.
    with psycopg.connect(base.owner_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    s = base.in_database(db_name).replace(
        app_id=f"palliwatch-{tag}",
        topic_namespace=tag,
        web_port=_free_port(),
    )
    state = base.state_dir / "bench" / tag
    state.mkdir(parents=True, exist_ok=True)
    # The bench's worker has a database of its own (so counts as external): give it the
    # local stack's secret. Ticks every few seconds (22 messages each): the end of the
    # backfill is read from the committed offsets, which ticks in flight keep a few records
    # short of the end.
    worker = s.with_resolved_cell_key_secret().replace(state_dir=state, reevaluate_seconds=5.0)
    env = child_env(worker)
    migrate(s.database)
    ensure_topics(s)
    return Run(s, env, db_name, base.owner_url, worker)


def _cleanup(run: Run) -> None:
    delete_run_topics(run.settings)
    drop_database(run.admin_url, run.db_name)


def _metrics(port: int) -> Scrape:
    return scrape(port) or Scrape(())


def _rss_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _faust_ceiling(run: Run, mode: str, topic: str, expected: int) -> float:
    """Records/s of streams/tooling/bench_ceiling.py (a Faust worker doing no work of ours) over
    the same topic, with the bench worker's settings."""
    out = run.worker.state_dir / f"ceiling-{mode}.json"
    log = run.worker.state_dir / f"ceiling-{mode}.log"
    with log.open("wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "streams.tooling.bench_ceiling", mode, topic, str(expected),
             str(out)],
            cwd=REPO_ROOT, env=run.env, stdout=f, stderr=subprocess.STDOUT, timeout=900,
        )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"the Faust ceiling run ({mode}) failed; see {log}")
    result = json.loads(out.read_text())
    return float(result["records"]) / max(float(result["seconds"]), 1e-9)


def _group_done(s: Settings, topics: list[str]) -> bool:
    """Has the worker's consumer group committed every partition of ``topics`` to its end?"""
    from kafka import TopicPartition

    admin = kafka_clients.admin(s)
    consumer = kafka_clients.consumer(s)
    try:
        committed = admin.list_group_offsets({s.app_id: None}).get(s.app_id, {})
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or [])
        ]
        ends = consumer.end_offsets(parts)
        for tp in parts:
            meta = committed.get(tp)
            offset = getattr(meta, "offset", meta)
            if ends[tp] > 0 and (offset is None or offset < ends[tp]):
                return False
        return True
    finally:
        consumer.close()
        admin.close()


async def _raw_consume_rate(s: Settings, topic: str, expected: int) -> tuple[float, int]:
    """Records per second a bare aiokafka consumer reads from ``topic`` (no processing)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        **kafka_clients.aiokafka_options(s),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        n = 0
        started = time.perf_counter()
        while n < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                break
            n += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - started), n
    finally:
        await consumer.stop()


def _quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]):
    """histogram_quantile over the difference of two snapshots (linear within a bucket)."""
    prev = dict(before)
    buckets = [(le, c - prev.get(le, 0.0)) for le, c in after]
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    lower, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower, lower_count = le, count
    return None


def bench_pipeline(
    base: Settings,
    surveys: int,
    months: int,
    live_seconds: float,
    rate: float,
    seed: int = 17,
    profile: bool = False,
) -> dict[str, Any]:
    """``profile``: sample the worker with py-spy through the backfill and report its CPU by
    stage, in µs per survey (streams/tooling/profile.py)."""
    from streams.tooling.producer import make_producer, send_records
    from streams.tooling.simulator import (
        SurveyFactory,
        complete_months_before,
        official_deaths_records,
        population_records,
        unit_events_records,
    )

    run = _prepare(base)
    s = run.settings
    proc: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None  # py-spy, while it samples the worker
    try:
        now = datetime.now(UTC)
        month_list = complete_months_before(now, months)
        t0 = time.perf_counter()
        records = list(SurveyFactory(seed=seed).backfill(surveys, month_list, now))
        generated_s = time.perf_counter() - t0
        producer = make_producer(s)
        send_records(producer, s, OFFICIAL_DEATHS, official_deaths_records(month_list, now))
        years = sorted({int(m[:4]) for m in month_list} | {now.year})
        send_records(producer, s, POPULATION, population_records(years))
        send_records(producer, s, UNIT_EVENTS, unit_events_records())
        t0 = time.perf_counter()
        sent = send_records(producer, s, DEATH_SURVEYS, records)
        produce_rate = sent / (time.perf_counter() - t0)
        print(f"[bench] produced {sent} survey records ({produce_rate:,.0f}/s)", flush=True)

        ceiling, read = asyncio.run(_raw_consume_rate(s, s.topic(DEATH_SURVEYS), sent))
        print(f"[bench] raw aiokafka consume: {ceiling:,.0f} records/s ({read})", flush=True)
        faust_rates = {
            mode: _faust_ceiling(run, mode, s.topic(DEATH_SURVEYS), read)
            for mode in ("consume", "forward")
        }
        print(
            f"[bench] Faust, no work of ours: {faust_rates['consume']:,.0f} records/s read, "
            f"{faust_rates['forward']:,.0f} /s with a forward and a changelog record per record",
            flush=True,
        )

        log_path = run.worker.state_dir / "worker.log"
        log = log_path.open("ab")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.tooling.cli", "worker"],
            cwd=REPO_ROOT,
            env=run.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        spy_path = run.worker.state_dir / "backfill-profile.txt"
        if profile:
            spy = worker_profile.start(proc.pid, spy_path)
        first_at: float | None = None
        cpu_at_first = 0.0
        inputs = [s.topic(t) for t in CATALOGUE if not t.name.startswith("palliwatch.indicators")]
        # The valid surveys are not read back: the stage that admits them forwards them there.
        unread = {s.topic(DEATH_SURVEYS.valid), s.topic(DEAD_LETTER)}
        inputs = [t for t in inputs if t not in unread]
        last_print = 0.0
        while True:
            time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}; see {log_path}")
            m = _metrics(s.web_port)
            consumed = m.total("palliwatch_records_consumed_total", topic=DEATH_SURVEYS.name)
            if first_at is None and consumed > 0:
                first_at = time.perf_counter()
                cpu_at_first = worker_profile.cpu_seconds(proc.pid)
            if time.perf_counter() - last_print > 10:
                last_print = time.perf_counter()
                print(
                    f"[bench] {time.perf_counter() - started:6.0f}s consumed {consumed:,.0f}"
                    f" rows {m.total('palliwatch_indicator_rows_written_total'):,.0f}"
                    f" rss {_rss_kib(proc.pid, 'VmRSS') / 1024:,.0f} MiB",
                    flush=True,
                )
            idle = m.value("palliwatch_evaluation_pending_scopes", 1.0) == 0
            # Contract topics are compacted: once the broker has cleaned a segment, a survey's
            # superseded revisions are gone. The worker can only read what the raw consumer read.
            if consumed >= read and idle and _group_done(s, inputs):
                done_at = time.perf_counter()
                break
        assert first_at is not None
        backfill_s = done_at - first_at
        throughput = read / backfill_s
        backfill_cpu_s = worker_profile.cpu_seconds(proc.pid) - cpu_at_first
        print(f"[bench] backfill done: {throughput:,.0f} surveys/s ({backfill_s:.1f} s, worker CPU "
              f"{backfill_cpu_s:.1f} s)")  # fmt: skip
        stages: dict[str, float] = {}
        if spy is not None:
            worker_profile.stop(spy)
            spy = None
            samples = worker_profile.stage_samples(spy_path.read_text())
            stages = worker_profile.per_survey(samples, backfill_cpu_s, read)
            print(f"[bench] worker CPU by stage, µs per survey (py-spy, {spy_path}):")
            for stage, us in stages.items():
                print(f"[bench]   {us:8.1f}  {stage}")

        # Live phase: steady rate, submitted_at = now.
        from streams.tooling.simulator import live_id_prefix

        latency_metrics = ("palliwatch_processing_latency_seconds",
                           "palliwatch_complete_latency_seconds")  # fmt: skip
        m = _metrics(s.web_port)
        before = {name: m.histogram(name) for name in latency_metrics}
        passes_before = m.histogram("palliwatch_evaluation_seconds", **{"pass": "headline"})
        factory = SurveyFactory(seed=seed + 1, id_prefix=live_id_prefix(time.time()))
        live_sent = 0
        t_start = time.perf_counter()
        while time.perf_counter() - t_start < live_seconds:
            target = int((time.perf_counter() - t_start) * rate)
            while live_sent < target:
                record = factory.live(datetime.now(UTC))
                producer.send(
                    s.topic(DEATH_SURVEYS),
                    key=record["survey_id"].encode(),
                    value=orjson.dumps(record),
                )
                live_sent += 1
            producer.flush()
            time.sleep(0.01)
        time.sleep(5)  # the last ones through
        m = _metrics(s.web_port)
        after = {name: m.histogram(name) for name in latency_metrics}
        headline_pass = _quantile(
            0.5, passes_before, m.histogram("palliwatch_evaluation_seconds", **{"pass": "headline"})
        )
        quantiles = {
            (name, q): _quantile(q, before[name], after[name])
            for name in latency_metrics
            for q in (0.5, 0.99)
        }

        def seconds(name: str, q: float) -> float | None:
            value = quantiles[(name, q)]
            return None if value is None else round(value, 3)

        peak_rss = _rss_kib(proc.pid, "VmHWM") / 1024
        producer.close()
        results = {
            "measured_at": datetime.now(UTC).isoformat(),
            "surveys": surveys,
            "survey_records_sent": sent,
            "survey_records_in_topic": read,
            "months": months,
            "generate_seconds": round(generated_s, 1),
            "produce_records_per_s": round(produce_rate),
            "raw_consume_records_per_s": round(ceiling),
            "backfill_seconds": round(backfill_s, 1),
            "backfill_surveys_per_s": round(throughput),
            "ratio_to_raw_consume": round(throughput / ceiling, 4),
            "faust_consume_records_per_s": round(faust_rates["consume"]),
            "faust_forward_records_per_s": round(faust_rates["forward"]),
            "ratio_to_faust_forward": round(throughput / faust_rates["forward"], 3),
            "live_rate_per_s": rate,
            "live_seconds": live_seconds,
            "live_headline_latency_p50_s": seconds(latency_metrics[0], 0.5),
            "live_headline_latency_p99_s": seconds(latency_metrics[0], 0.99),
            "live_complete_latency_p50_s": seconds(latency_metrics[1], 0.5),
            "live_complete_latency_p99_s": seconds(latency_metrics[1], 0.99),
            "live_headline_pass_p50_s": None if headline_pass is None else round(headline_pass, 3),
            "worker_peak_rss_mib": round(peak_rss),
            "backfill_worker_cpu_s": round(backfill_cpu_s, 1),
        }
        if stages:
            results["backfill_us_per_survey_by_stage"] = stages
        return results
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()  # the bench failed before the profile was read
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        _cleanup(run)


def print_results(results: dict[str, Any], out: Path) -> None:
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"  {k:<{width}}  {v}")
    out.write_text(json.dumps(results, indent=2))
    print(f"[bench] written to {out}")
