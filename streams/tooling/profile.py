"""`palliwatch bench pipeline --profile`: where the worker's CPU goes, stage by stage, in µs per
survey.

py-spy samples the running worker (``--nonblocking``: it is not paused, so the figures are not
inflated by the sampling) for the whole backfill. Each sample is charged to the first stage
found from its innermost frame outwards: a pydantic call under the screen is screen time, a
psycopg call under the sink is database time, and what is in no stage of ours is the
framework's (Faust, aiokafka, the event loop). The shares of samples are then spread over the
worker's CPU time (user + system, every thread, from /proc), divided by the surveys read.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (stage, substrings of a frame "function (file:line)"), tried in this order on each frame
# from the innermost outwards.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # py-spy cannot tell a thread blocked in epoll from a running one without pausing it.
    ("waiting for I/O (epoll)", ("EpollSelector.select",)),
    ("changed-row filter", ("processors/written.py",)),
    ("evaluation", ("processors/columnar.py", "evaluate_scope", "evaluate_structure",
                    "evaluate_headline", "_official_row", "delay_distribution")),
    ("contributions (catalogue conditions)", ("processors/catalogue.py",)),
    ("admission and revision state", ("processors/admission.py", "processors/revisions.py",
                                      "processors/person_state.py", "Settlement.admit", "admit (",
                                      "scope_messages")),
    # settle's own frame: unpacking by-person messages and validating each survey again.
    ("settle: validating again", ("settle (", "unpack_person_message")),
    ("screen (identity scan, validation)", ("processors/validation.py", "streams/agents/screen",
                                            "by_partition_messages")),
    ("applying deltas to scope state", ("apply_survey_delta", "apply_contribution", "flow.py",
                                        "_add_sparse", "processors/aggregate.py")),
    ("database writes (psycopg, COPY)", ("processors/sink.py", "psycopg", "processors/db.py")),
    ("Faust tables and changelogs", ("faust/tables", "faust/stores")),
    ("Kafka client (aiokafka, Faust's producer and consumer)", (
        "aiokafka", "faust/transport", "ServiceThread")),
)  # fmt: skip
FRAMEWORK = "framework (Faust streams, asyncio event loop, other)"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError(
            "py-spy not found: `pip install -e '.[dev]'` installs it (it is a dev dependency)"
        )
    return found


def start(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into ``out`` (collapsed stacks) until ``stop``; its messages go
    to ``out`` with the suffix .log (a pipe nobody reads could fill and stall it)."""
    with out.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
             "--nonblocking", "--output", str(out)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    """py-spy writes its file when interrupted."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("py-spy did not finish writing its profile within 60 s") from None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for stage, marks in STAGES:
            if any(mark in frame for mark in marks):
                return stage
    return FRAMEWORK


def stage_samples(collapsed: str) -> Counter[str]:
    """Samples per stage from py-spy's raw output ("frame;frame;... count" a line)."""
    out: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[stage_of(stack)] += int(count)
    return out


def per_survey(samples: Counter[str], cpu_s: float, surveys: int) -> dict[str, float]:
    """µs of worker CPU per survey, by stage (largest first), and the total."""
    total = sum(samples.values())
    if not total or not surveys:
        return {}
    out = {stage: round(n / total * cpu_s / surveys * 1e6, 1) for stage, n in samples.most_common()}
    out["total"] = round(cpu_s / surveys * 1e6, 1)
    return out
