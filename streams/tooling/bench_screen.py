"""`palliwatch bench screen`: what one record costs the screen, normal and crafted.

The screen's work per record is what it does in the worker: ``parse`` and then either the
canonical JSON a valid record travels on as, or the dead-letter envelope (redaction included)
serialised. Crafted records are each as large as the contract allows (64 KiB) and aim at one
part of the boundary: digit runs, runs of the identity-number layout, look-alike digits and
invisible characters that folding must handle, JSON escapes, exponent numbers, nesting,
containers, duplicate keys, quotes in broken JSON, NULs, other encodings. Target: the worst
case under 20 ms (the README's Benchmarks).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from processors.validation import MAX_PAYLOAD_BYTES, DeadLetter, canonical, parse
from schemas.identity import fold
from schemas.models import DeathSurvey
from streams.tooling.simulator import SurveyFactory, complete_months_before

WORST_CASE_TARGET_MS = 20.0


def _normal_surveys(n: int, now: datetime) -> list[bytes]:
    records = SurveyFactory(seed=3).backfill(n * 2, complete_months_before(now, 12), now)
    return [orjson.dumps(r) for r in records if "survey_id" in r][:n]


def crafted_records(base: dict[str, Any]) -> dict[str, bytes]:
    """Records of at most MAX_PAYLOAD_BYTES, each built to cost the screen."""
    room = MAX_PAYLOAD_BYTES - len(orjson.dumps(base)) - 64

    def note(fill: str) -> bytes:
        raw = orjson.dumps({**base, "note": fill})
        return raw[:MAX_PAYLOAD_BYTES]

    def fits(raw: bytes) -> bytes:
        return raw[:MAX_PAYLOAD_BYTES]

    return {
        "digit run": note("1" * room),
        "layout runs, wrong check digit": note("121212-1213 " * (room // 12)),
        "identity numbers": note("121212-1212 " * (room // 12)),
        "dates with spaces": note("20250101 " * (room // 9)),
        "fullwidth digits": note("\uff11" * (room // 3)),
        "zero-width between digits": note("1\u200b" * (room // 4)),
        "unicode escapes": note("x" * (room // 6)).replace(b"x", b"\\u0031"),
        "escaped quotes, truncated": fits(note("q" * (room // 2)).replace(b"q", b'\\"')),
        "exponent numbers": fits(orjson.dumps({**base, "x": [1.2e11] * (room // 16)})),
        "nesting": b"[" * (room // 2) + b"]" * (room // 2),
        "many containers": fits(b"[" + b",".join([b"[]"] * (room // 3)) + b"]"),
        "many keys": fits(orjson.dumps({**base, **{f"k{i}": 1 for i in range(room // 12)}})),
        "duplicate keys": fits(b"{" + b",".join([b'"a":1'] * (room // 6)) + b"}"),
        "NUL escapes": note("\x00" * (room // 7)),
        "UTF-16": fits(orjson.dumps({**base, "note": "1" * (room // 3)}).decode().encode("utf-16")),
    }


def _screen_once(raw: bytes, now: datetime) -> str:
    result = parse(raw, DeathSurvey, now, key=b"bench-0001")
    if isinstance(result, DeadLetter):
        orjson.dumps(result.envelope(raw, "bench", 0, 0, key=b"bench-0001"))
        return result.reason.value
    canonical(result)
    return "valid"


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bench_screen(repeats: int = 15, normal: int = 3000) -> dict[str, Any]:
    now = datetime.now(UTC)
    fold("\uff11")  # the folding table is built once per process (the worker does it at start)
    surveys = _normal_surveys(normal, now)
    base = orjson.loads(surveys[0])
    for raw in surveys[:50]:
        _screen_once(raw, now)
    per_survey_runs = []
    for _ in range(max(3, repeats // 3)):
        started = time.perf_counter()
        for raw in surveys:
            _screen_once(raw, now)
        per_survey_runs.append((time.perf_counter() - started) / len(surveys) * 1e6)
    results: dict[str, Any] = {
        "normal_survey_us": round(statistics.median(per_survey_runs), 1),
        "normal_surveys": len(surveys),
        "repeats": repeats,
        "crafted": {},
    }
    print(f"[bench] screen: a normal survey {results['normal_survey_us']} us (median of runs)")
    print(f"{'crafted record (64 KiB at most)':36s} {'bytes':>7s} {'median ms':>10s}  outcome")
    for name, raw in crafted_records(base).items():
        outcome = _screen_once(raw, now)
        ms = _median_ms(lambda raw=raw: _screen_once(raw, now), repeats)  # type: ignore[misc]
        results["crafted"][name] = {
            "bytes": len(raw),
            "median_ms": round(ms, 3),
            "outcome": outcome,
        }
        print(f"{name:36s} {len(raw):7d} {ms:10.3f}  {outcome}")
    worst = max(results["crafted"].items(), key=lambda kv: kv[1]["median_ms"])
    results["worst_case"] = {"record": worst[0], "median_ms": worst[1]["median_ms"]}
    results["worst_case_target_ms"] = WORST_CASE_TARGET_MS
    verdict = "meets" if worst[1]["median_ms"] <= WORST_CASE_TARGET_MS else "MISSES"
    print(
        f"[bench] worst case: {worst[0]} {worst[1]['median_ms']} ms ({verdict} the target of "
        f"{WORST_CASE_TARGET_MS:.0f} ms)"
    )
    return results
