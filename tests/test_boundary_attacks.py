"""Crafted records at the ingestion boundary, on the real broker, mixed with valid traffic.

Each crafted record (duplicate keys, identity numbers written as floats, with look-alike digits
and separators, invisible characters, JSON escapes, in truncated, deeply nested or UTF-16/32
text, NUL characters, non-UTF-8 bytes, a future submitted_at, a person_ref that starts with a
12-digit identity number) is sent to its contract topic between valid records. Afterwards:

- every crafted record is exactly one dead letter with the expected reason, and no form of its
  envelope holds an identity number;
- no topic the pipeline writes (`.valid` twins, internal topics, Faust changelogs, dead
  letters), no table or published view and not the worker log holds the number in any form;
- every valid record was processed and stored; consumed = valid + dead letters + stale per
  contract topic; the worker is alive and its consumer group committed every contract topic to
  its end.

The identity number is the test number 19121212-1212 (short 121212-1212), never a real one.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from processors import person_state
from schemas.identity import find_identity_numbers, scan_view
from schemas.topics import (
    CATALOGUE,
    CONTRACT_TOPICS,
    DEATH_SURVEYS,
    OFFICIAL_DEATHS,
    POPULATION,
    TARGETS,
    UNIT_EVENTS,
    TopicSpec,
)
from streams.settings import Settings
from streams.tooling.producer import make_producer
from tests import test_validation as validation_examples
from tests.conftest import Isolated, WorkerProcess, wait_for
from tests.pipeline_helpers import dead_letters, metric, metric_samples, person, read_topic, survey

pytestmark = pytest.mark.integration

PNR_LONG = "19121212-1212"
PNR_SHORT = "121212-1212"
PNR_DIGITS = "1212121212"

IDENTITY = "identity_number_in_payload"
DUPLICATE_KEY = "duplicate_key"
TOO_DEEP = "too_deep"
TOO_LARGE = "payload_too_large"
UNSTORABLE = "unstorable_character"
NOT_UTF8 = "not_utf8"
FUTURE = "submitted_in_future"


# ---- how an identity number is looked for ------------------------------------------------


def leaks(text: str) -> list[str]:
    """The identity numbers ``text`` holds in any form: shaped ones in its scan view (JSON
    escapes resolved, Unicode folded, exponent numbers as integers), and the test number's
    digits once separators (every dash and space folds to ``-`` and `` ``) are removed."""
    view = scan_view(text)
    found = find_identity_numbers(view)
    if PNR_DIGITS in re.sub(r"[-+ ]", "", view):
        found.append(f"digits {PNR_DIGITS}")
    return found


def _strings(value: object) -> Iterable[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def envelope_leaks(envelope: dict[str, Any]) -> list[str]:
    """Leaks of a dead letter: its JSON text and every string in it (the payload is a JSON text
    of its own: numbers in exponent form inside it are only evaluated when it is scanned as
    text)."""
    found = leaks(orjson.dumps(envelope).decode())
    for text in _strings(envelope):
        found += leaks(text)
    return found


# ---- crafted and valid records -----------------------------------------------------------


@dataclass(frozen=True)
class Record:
    label: str
    spec: TopicSpec
    key: bytes
    value: bytes
    reason: str | None  # None: a valid record


def _members(record: dict[str, Any]) -> bytes:
    """The members of a JSON object as text, without the braces."""
    return orjson.dumps(record)[1:-1]


def _survey(sid: str, **overrides: Any) -> dict[str, Any]:
    return survey(sid, person(sid), **overrides)


def _raw_survey(sid: str, before: bytes = b"", after: bytes = b"", **overrides: Any) -> bytes:
    """A survey's JSON with raw members written before and after its own."""
    return b"{" + before + _members(_survey(sid, **overrides)) + after + b"}"


def _digits_as(table: str) -> dict[int, str]:
    """A translation of ASCII digits to the ten characters of ``table``."""
    return str.maketrans("0123456789", table)


SUPERSCRIPT = _digits_as("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
CIRCLED = _digits_as("\u24ea" + "".join(chr(0x2460 + i) for i in range(9)))
FULLWIDTH = {**_digits_as("".join(chr(0xFF10 + i) for i in range(10))), ord("-"): "\uff0d"}
ARABIC_INDIC = _digits_as("".join(chr(0x0660 + i) for i in range(10)))
DEVANAGARI = _digits_as("".join(chr(0x0966 + i) for i in range(10)))

SEPARATORS = {
    "en-dash": "\u2013",
    "minus": "\u2212",
    "hyphen": "\u2010",
    "nb-hyphen": "\u2011",
    "fullwidth-hyphen": "\uff0d",
    "nbsp": "\u00a0",
    "space": " ",
    "soft-hyphen": "\u00ad",
    "zwsp": "\u200b",
    "double-dash": "--",
    "em-dash": "\u2014",
    "figure-space": "\u2007",
    "spaced-dash": " - ",
    "superscript-minus": "\u207b",
    "small-hyphen-minus": "\ufe63",
    "maqaf": "\u05be",
    "two-em-dash": "\u2e3a",
    "wave-dash": "\u301c",
    "tab": "\t",
    "newline": "\n",
    "ideographic-space": "\u3000",
    "line-separator": "\u2028",
    "narrow-nbsp": "\u202f",
}
BETWEEN_DIGITS = {
    "zwsp": "\u200b",
    "zwj": "\u200d",
    "word-joiner": "\u2060",
    "bom": "\ufeff",
    "nul": "\x00",  # orjson writes it as the escape \u0000
    "variation-selector": "\ufe0f",
    "tag-digit": "\U000e0031",
    "grapheme-joiner": "\u034f",
    "bidi-mark": "\u200f",
}


def _between(number: str, insert: str) -> str:
    return insert.join(number)


def crafted_surveys(now: datetime) -> list[Record]:
    out: list[Record] = []

    def add(label: str, value: bytes, reason: str) -> None:
        out.append(Record(label, DEATH_SURVEYS, label.encode(), value, reason))

    def note(label: str, text: object, reason: str = IDENTITY) -> None:
        add(label, orjson.dumps(_survey(label, note=text)), reason)

    # 1. Duplicate keys.
    add(
        "c-dup-note-first",
        _raw_survey(
            "c-dup-note-first", before=f'"note":"{PNR_SHORT}",'.encode(), after=b',"note":"ok"'
        ),
        IDENTITY,
    )
    add(
        "c-dup-note-last",
        _raw_survey(
            "c-dup-note-last", before=b'"note":"ok",', after=f',"note":"{PNR_LONG}"'.encode()
        ),
        IDENTITY,
    )
    add(
        "c-dup-person-ref",
        _raw_survey(
            "c-dup-person-ref", after=f',"person_ref":"{person("c-dup-person-ref-other")}"'.encode()
        ),
        DUPLICATE_KEY,
    )
    # The same with JSON whitespace between a key and its colon (valid JSON: RFC 8259 allows
    # whitespace around every structural character): one occurrence written so must not hide
    # the duplicate.
    other = person("c-dup-person-ref-other").encode()
    add(
        "c-dup-person-ref-spaced",
        _raw_survey("c-dup-person-ref-spaced", after=b',"person_ref" : "' + other + b'"'),
        DUPLICATE_KEY,
    )
    add(
        "c-dup-person-ref-spaced-first",
        _raw_survey("c-dup-person-ref-spaced-first", before=b'"person_ref"\t:"' + other + b'",'),
        DUPLICATE_KEY,
    )
    add(
        "c-dup-sex-newline",
        _raw_survey("c-dup-sex-newline", before=b'"sex"\n: "female",'),
        DUPLICATE_KEY,
    )
    measures = orjson.dumps(_survey("c-dup-measures"))
    assert measures.endswith(b'"measures":{}}')
    add(
        "c-dup-measures",
        measures[:-2] + b'"pain_assessed":true,"pain_assessed":false}}',
        DUPLICATE_KEY,
    )
    measures = orjson.dumps(_survey("c-dup-measures-spaced"))
    add(
        "c-dup-measures-spaced",
        measures[:-2] + b'"pain_assessed" :true,"pain_assessed":false}}',
        DUPLICATE_KEY,
    )
    # 2. Numbers that are not strings.
    note("c-float", 1212121212.0)
    note("c-float-12", 191212121212.0)
    note("c-float-negative", -1212121212.0)
    note("c-int-12", 191212121212)
    for label, number in [
        ("c-exp-12", b"1.21212121212e11"),
        ("c-exp-10", b"1.212121212E9"),
        ("c-exp-10-plus", b"12.12121212e+8"),
        ("c-exp-12-neg", b"-1.91212121212e11"),
    ]:
        add(label, _raw_survey(label, after=b',"note":' + number), IDENTITY)
    add(
        "c-exp-in-list",
        _raw_survey("c-exp-in-list", after=b',"note":[0.5,1.21212121212e11]'),
        IDENTITY,
    )
    # 3. Look-alike separators, digits and invisible characters.
    for name, sep in SEPARATORS.items():
        note(f"c-sep-{name}", f"pnr 121212{sep}1212")
        note(f"c-sep-long-{name}", f"pnr 19121212{sep}1212")
    note("c-digits-superscript", PNR_SHORT.translate(SUPERSCRIPT))
    note("c-digits-circled", PNR_SHORT.translate(CIRCLED))
    note("c-digits-fullwidth", PNR_LONG.translate(FULLWIDTH))
    note("c-digits-arabic-indic", PNR_SHORT.translate(ARABIC_INDIC))
    note("c-digits-devanagari", PNR_LONG.translate(DEVANAGARI))
    note("c-digits-mixed", "1\u00b2\u2460\uff12\u0661\u0968\u2013\u00b9\u2461\uff11\u0662")
    for name, insert in BETWEEN_DIGITS.items():
        note(f"c-between-{name}", _between(PNR_SHORT, insert))
    note("c-between-combining", "".join(c + "\u0301" for c in PNR_SHORT))
    note("c-digits-circled-twelve", "\u246b\u246b\u246b-\u246b\u246b")  # circled 12
    note(
        "c-digits-math-bold",
        PNR_SHORT.translate(_digits_as("".join(chr(0x1D7CE + i) for i in range(10)))),
    )
    note("c-between-combining-long", "".join(c + "\u0301\u0308" for c in PNR_LONG))
    # Raw control characters are not JSON (not_json), but the scan reads the text all the same.
    add("c-raw-nul", _raw_survey("c-raw-nul", after=b',"note":"121212\x001212"'), IDENTITY)
    add("c-raw-control", _raw_survey("c-raw-control", after=b',"note":"1212\x1f121212"'), IDENTITY)
    # Look-alike numbers in the record key of an otherwise valid survey.
    for label, key in [
        ("c-key-en-dash", "121212\u20131212"),
        ("c-key-fullwidth-digits", PNR_LONG.translate(FULLWIDTH)),
    ]:
        value = orjson.dumps(_survey(label))
        out.append(Record(label, DEATH_SURVEYS, key.encode(), value, IDENTITY))
    add(
        "c-key-fullwidth",
        orjson.dumps(_survey("c-key-fullwidth", measures={PNR_SHORT.translate(FULLWIDTH): True})),
        IDENTITY,
    )
    escaped_digits = "".join(f"\\u{ord(c):04x}" for c in PNR_SHORT).encode()
    add(
        "c-escaped-digits",
        _raw_survey("c-escaped-digits", after=b',"note":"' + escaped_digits + b'"'),
        IDENTITY,
    )
    add(
        "c-escaped-en-dash",
        _raw_survey("c-escaped-en-dash", after=b',"note":"121212\\u20131212"'),
        IDENTITY,
    )
    add(
        "c-escaped-nul",
        _raw_survey("c-escaped-nul", after=b',"note":"1212\\u00001212\\u000012"'),
        IDENTITY,
    )
    # 4. Truncated, deeply nested, other encodings.
    add(
        "c-truncated-escape",
        b'{"schema_version": 1, "survey_id": "c-truncated-escape", "note": "121212\\u002d1212", '
        b'"unit_id": "unit-0',
        IDENTITY,
    )
    add(
        "c-truncated-in-number",
        b'{"schema_version": 1, "survey_id": "c-truncated-in-number", "note": "19121212\\u2013121',
        # The number is cut before its check digit: nothing identity-shaped is left.
        "not_json",
    )
    for depth in (300, 2000):
        nested = b"[" * depth + f'"{PNR_SHORT}"'.encode() + b"]" * depth
        add(
            f"c-nested-{depth}",
            _raw_survey(f"c-nested-{depth}", after=b',"note":' + nested),
            IDENTITY,
        )
    text = orjson.dumps(_survey("c-encoded", note=PNR_LONG)).decode()
    for codec in ("utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-32-be"):
        add(
            f"c-encoded-{codec}",
            text.replace("c-encoded", f"c-encoded-{codec}").encode(codec),
            IDENTITY,
        )
    # 5. Nesting and size.
    add("c-brackets-1000", b"[" * 1000 + b"]" * 1000, TOO_DEEP)
    add("c-brackets-30000", b"[" * 30000 + b"]" * 30000, TOO_DEEP)
    add("c-brackets-100000", b"[" * 100000 + b"]" * 100000, TOO_LARGE)
    add(
        "c-containers",
        orjson.dumps(_survey("c-containers", note=[[] for _ in range(1500)])),
        TOO_DEEP,
    )
    deep: Any = True
    for _ in range(20):
        deep = {"x": deep}
    add("c-deep-measures", orjson.dumps(_survey("c-deep-measures", measures={"x": deep})), TOO_DEEP)
    # 6. NUL.
    add("c-nul-unit", orjson.dumps(_survey("c-nul-unit", unit_id="unit\x00")), UNSTORABLE)
    add(
        "c-nul-measures",
        orjson.dumps(_survey("c-nul-measures", measures={"note": "a\x00b"})),
        UNSTORABLE,
    )
    # A NUL in an object key whose value is not a string (measures are stored as jsonb).
    add(
        "c-nul-measures-key",
        orjson.dumps(_survey("c-nul-measures-key", measures={"pain\x00": True})),
        UNSTORABLE,
    )
    add("c-nul-top-key", orjson.dumps(_survey("c-nul-top-key", **{"x\x00": True})), UNSTORABLE)
    # 7. Not UTF-8.
    add("c-not-utf8", b'{"schema_version": 1, "x": "\xff"}', NOT_UTF8)
    raw = orjson.dumps(_survey("c-not-utf8-survey"))
    add("c-not-utf8-survey", raw.replace(b"unit-09-001", b"unit-09-\xc3\x28"), NOT_UTF8)
    # 8. Submitted an hour ahead of the worker's clock.
    ahead = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    yesterday = (now - timedelta(days=1)).date().isoformat()
    add(
        "c-future",
        orjson.dumps(_survey("c-future", submitted_at=ahead, date_of_death=yesterday)),
        FUTURE,
    )
    # 9. A pseudonym that starts with a 12-digit identity number with century.
    for label, ref in [
        ("c-ref-century-19", "191212121212" + "a" * 52),
        ("c-ref-century-20", "201212121212" + "b" * 52),
        ("c-ref-century-inside", "abcdef" + "191212121212" + "c" * 46),
    ]:
        assert len(ref) == 64
        add(label, orjson.dumps(survey(label, ref)), IDENTITY)
    return out


VALID_SURVEY_IDS = [f"v-{i:02d}" for i in range(14)]


def valid_survey(sid: str, **overrides: Any) -> Record:
    s = _survey(sid, **overrides)
    return Record(sid, DEATH_SURVEYS, sid.encode(), orjson.dumps(s), None)


def _mix(valid: list[Record], crafted: list[Record], before: int, after: int) -> list[Record]:
    """``before`` valid records, then the crafted ones with the rest of the valid records spread
    between them, and ``after`` valid records at the end."""
    head, middle, tail = (
        valid[:before],
        valid[before : len(valid) - after],
        valid[len(valid) - after :],
    )
    out = list(head)
    step = max(1, len(crafted) // (len(middle) + 1))
    for i, record in enumerate(crafted):
        out.append(record)
        if middle and (i + 1) % step == 0:
            out.append(middle.pop(0))
    return out + middle + tail


# ---- reading what the worker did ---------------------------------------------------------


def produce(settings: Settings, records: list[Record]) -> dict[tuple[str, int, int], Record]:
    """Send in order; the source position (topic, partition, offset) of each record."""
    producer = make_producer(settings)
    futures = [
        (r, producer.send(settings.topic(r.spec), key=r.key, value=r.value)) for r in records
    ]
    producer.flush()
    sent = {}
    for record, future in futures:
        md = future.get(timeout=30)
        sent[(md.topic, md.partition, md.offset)] = record
    producer.close()
    return sent


def metrics_by_topic(settings: Settings) -> dict[tuple[str, str], float] | None:
    """(metric name, topic label) -> value summed over the other labels; None while down."""
    samples = metric_samples(settings)
    if samples is None:
        return None
    out: Counter[tuple[str, str]] = Counter()
    for sample in samples:
        if sample.name.startswith("palliwatch_") and "topic" in sample.labels:
            out[(sample.name, sample.labels["topic"])] += sample.value
    return dict(out)


def accounting(settings: Settings, records: list[Record]) -> dict[str, dict[str, float]]:
    """Per contract topic used: records sent, consumed, valid, dead letters (and stale)."""
    values = metrics_by_topic(settings) or {}
    stale = metric(settings, "palliwatch_stale_revisions_total")
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.spec.name for r in records):
        out[name] = {
            "sent": sum(1 for r in records if r.spec.name == name),
            "consumed": values.get(("palliwatch_records_consumed_total", name), -1),
            "valid": values.get(("palliwatch_valid_total", name), -1),
            "dead": values.get(("palliwatch_dead_letters_total", name), -1),
            "stale": stale if name == DEATH_SURVEYS.name else 0.0,
        }
    return out


def balanced(acc: dict[str, dict[str, float]]) -> bool:
    return all(
        a["consumed"] == a["sent"] == a["valid"] + a["dead"] + a["stale"] for a in acc.values()
    )


def uncommitted(settings: Settings, topics: list[str]) -> dict[str, tuple[int | None, int]]:
    """Partitions of ``topics`` whose committed offset (the worker's consumer group, the Faust
    app id) is short of the partition's end: 'topic[p]' -> (committed, end)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        # kafka-python 3 names it list_group_offsets (list_consumer_group_offsets before).
        committed = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        end = consumer.end_offsets(parts)
    finally:
        consumer.close()
    out = {}
    for tp in parts:
        meta = committed.get(tp)
        offset = None if meta is None else getattr(meta, "offset", meta)
        if end[tp] > 0 and (offset is None or offset < end[tp]):
            out[f"{tp.topic}[{tp.partition}]"] = (offset, end[tp])
    return out


def settle(predicate: Callable[[], bool], timeout_s: float, worker: WorkerProcess) -> bool:
    """Poll until ``predicate`` holds or the time is up (the assertions after it then say what
    is missing); fails at once if the worker died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.assert_alive()
        if predicate():
            return True
        time.sleep(1.0)
    return False


def check_dead_letters(settings: Settings, sent: dict[tuple[str, int, int], Record]) -> list[str]:
    """Problems: a crafted record with no dead letter, several, the wrong reason, a dead letter
    of a valid record or of nothing sent, an envelope that holds an identity number."""
    problems: list[str] = []
    seen: Counter[tuple[str, int, int]] = Counter()
    for env in dead_letters(settings):
        source = (env["source_topic"], env["source_partition"], env["source_offset"])
        seen[source] += 1
        record = sent.get(source)
        if record is None:
            problems.append(
                f"dead letter of no record sent: source {source}, reason {env['reason']} "
                f"({env['detail']})"
            )
        elif record.reason is None:
            problems.append(
                f"valid record {record.label} became a dead letter: {env['reason']} "
                f"({env['detail']})"
            )
        elif env["reason"] != record.reason:
            problems.append(
                f"{record.label}: reason {env['reason']} ({env['detail']}), "
                f"expected {record.reason}"
            )
        if envelope_leaks(env):
            label = record.label if record else source
            fields = [k for k, v in env.items() if envelope_leaks({k: v})]
            problems.append(f"{label}: the dead letter holds the number in {fields}")
    for source, record in sent.items():
        if record.reason is not None and seen[source] != 1:
            problems.append(f"{record.label}: {seen[source]} dead letters, expected 1")
    return problems


def check_nothing_leaked(
    isolated: Isolated, worker: WorkerProcess, skip_topics: Iterable[TopicSpec]
) -> list[str]:
    """Every topic the pipeline writes, every table and view of the test database and the worker
    log: where the identity number shows, in any form."""
    s = isolated.settings
    problems: list[str] = []
    skip = {s.topic(t) for t in skip_topics}
    written = {s.topic(t) for t in CATALOGUE} - skip
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        written |= {t for t in admin.list_topics() if t.startswith(s.app_id)}
    finally:
        admin.close()
    assert any(t.endswith("-people-changelog") for t in written), written
    assert s.topic(DEATH_SURVEYS.valid) in written
    for topic in sorted(written):
        packed = topic.endswith("-people-changelog")
        for r in read_topic(s, topic):
            value = r.value or b""
            if packed and value:
                value = orjson.dumps(person_state.unpack(value))
            for part, raw in (("key", r.key or b""), ("value", value)):
                found = leaks(raw.decode("utf-8", "replace"))
                if found:
                    problems.append(f"topic {topic}@{r.partition}:{r.offset} {part}: {found}")
    # As the owner, who reads every relation (the worker's writer role has no grant on the
    # published views, and information_schema lists only what the user may read).
    with psycopg.connect(s.owner_url) as conn:
        relations = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('public', 'published') "
            "UNION SELECT schemaname, matviewname FROM pg_matviews "
            "WHERE schemaname IN ('public', 'published') ORDER BY 1, 2"
        ).fetchall()
        assert ("public", "surveys") in relations and ("published", "unit_state") in relations
        for schema, name in relations:
            for (row,) in conn.execute(f'SELECT t::text FROM "{schema}"."{name}" t'):
                found = leaks(row)
                if found:
                    problems.append(f"table {schema}.{name}: {found} in {row[:300]!r}")
    found = leaks(worker.log_path.read_text(errors="replace"))
    if found:
        problems.append(f"worker log: {found}")
    return problems


def expect(problems: list[str], what: str, actual: object, expected: object) -> None:
    if actual != expected:
        problems.append(f"{what}: {actual!r}, expected {expected!r}")


def check_committed(isolated: Isolated, worker: WorkerProcess) -> list[str]:
    """The worker's consumer group commits every contract topic to its end (within 90 s)."""
    s = isolated.settings
    contract = [s.topic(t) for t in CONTRACT_TOPICS]
    if settle(lambda: not uncommitted(s, contract), 90, worker):
        return []
    return [f"committed offsets short of the end (committed, end): {uncommitted(s, contract)}"]


def wait_for_metrics(isolated: Isolated, worker: WorkerProcess) -> None:
    wait_for(
        lambda: metric(isolated.settings, "palliwatch_stale_revisions_total") >= 0,
        120,
        "the worker's /metrics endpoint",
        worker,
    )


# ---- the tests ---------------------------------------------------------------------------


def test_crafted_surveys_are_dead_letters_and_nothing_identifying_leaks(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    """114 crafted surveys among 16 valid ones (a correction and a stale resend among
    them): one dead letter each, with its reason and no number in any form; the valid ones
    stored and counted; no number in any topic, table or the log; offsets committed."""
    s = isolated.settings
    now = datetime.now(UTC)
    crafted = crafted_surveys(now)
    assert len({r.label for r in crafted}) == len(crafted)
    valid = [valid_survey(sid) for sid in VALID_SURVEY_IDS]
    # A correction (applied) and a resend of the same revision (stale) among them.
    corrected = valid_survey("v-01", revision=2, place_of_death="own_home")
    resent = valid_survey("v-02")
    valid[9:9] = [corrected]
    valid[12:12] = [resent]
    # The pseudonyms must not hold an identity-number shape by chance (they are deterministic).
    for sid in [*VALID_SURVEY_IDS, *(r.label for r in crafted), "c-dup-person-ref-other"]:
        assert find_identity_numbers(person(sid)) == [], sid
    # The leak check sees every form sent (else finding nothing downstream would prove nothing).
    for r in crafted:
        if r.reason == IDENTITY:
            assert leaks(r.value.decode("utf-8", "replace") + " " + r.key.decode()), r.label
    records = _mix(valid, crafted, before=4, after=4)
    assert len(records) == len(crafted) + len(valid)

    wait_for_metrics(isolated, worker)
    sent = produce(s, records)

    def done() -> bool:
        if not balanced(accounting(s, records)):
            return False
        with psycopg.connect(s.database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM surveys").fetchone()
        return stored is not None and stored[0] >= len(VALID_SURVEY_IDS)

    settle(done, 120, worker)
    worker.assert_alive()

    # Every check runs and every problem is reported together.
    problems = check_dead_letters(s, sent)
    # Every valid survey is stored (the correction applied), forwarded and counted.
    with psycopg.connect(s.database_url) as conn:
        stored = dict(conn.execute("SELECT survey_id, revision FROM surveys").fetchall())
        arrivals = conn.execute("SELECT count(*) FROM survey_arrivals").fetchone()
    expect(
        problems,
        "surveys table",
        stored,
        {sid: 2 if sid == "v-01" else 1 for sid in VALID_SURVEY_IDS},
    )
    expect(problems, "survey_arrivals rows", arrivals, (len(VALID_SURVEY_IDS) + 1,))
    valid_ids = sorted(
        orjson.loads(r.value)["survey_id"] for r in read_topic(s, s.topic(DEATH_SURVEYS.valid))
    )
    expect(problems, "the .valid topic", valid_ids, sorted([*VALID_SURVEY_IDS, "v-01"]))
    expect(
        problems,
        "accounting of the survey topic",
        accounting(s, records)[DEATH_SURVEYS.name],
        {
            "sent": len(records),
            "consumed": len(records),
            "valid": len(VALID_SURVEY_IDS) + 1,
            "dead": len(crafted),
            "stale": 1.0,
        },
    )
    problems += check_nothing_leaked(isolated, worker, skip_topics=[DEATH_SURVEYS])
    problems += check_committed(isolated, worker)
    worker.assert_alive()
    assert not problems, "\n".join(problems) + f"\nworker log:\n{worker.log_tail(60)}"


def unit_event(unit_id: str, **changes: Any) -> dict[str, Any]:
    """The validation tests' unit event (one source of example records), under ``unit_id``."""
    return {**validation_examples.unit_event(unit_id=unit_id), "accepts_children": True, **changes}


def official(region: str, month: str, deaths: int, **changes: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "region_code": region,
        "month": month,
        "deaths": deaths,
        "source": "SCB preliminary monthly deaths",
        "published_at": "2025-04-14T07:00:00Z",
        **changes,
    }


def population(muni: str, year: int, people: int, **changes: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "municipality_code": muni,
        "year": year,
        "population": people,
        **changes,
    }


def target(indicator: str, scope: str, value: float, **changes: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "indicator_id": indicator,
        "scope": scope,
        "comparator": ">=",
        "value": value,
        "warn_value": None,
        "valid_from": "2024-06-01",
        "source": "Socialstyrelsen (2024)",
        **changes,
    }


def _rec(
    spec: TopicSpec,
    label: str,
    value: dict[str, Any] | bytes,
    reason: str | None,
    key: bytes | None = None,
) -> Record:
    if isinstance(value, dict):
        key = key or spec.key_for(value)
        value = orjson.dumps(value)
    assert key is not None
    return Record(label, spec, key, value, reason)


def _with_raw(record: dict[str, Any], field: str, raw: bytes) -> bytes:
    """``record`` as JSON with ``field`` (a top-level or ``a.b`` nested member) written as
    ``raw``."""
    marker = "@@RAW@@"
    outer, _, inner = field.partition(".")
    copy = {**record}
    if inner:
        copy[outer] = {**copy[outer], inner: marker}
    else:
        copy[outer] = marker
    return orjson.dumps(copy).replace(f'"{marker}"'.encode(), raw)


CRAFTED_UNIT_IDS = [
    "U-X-FTE",
    "U-X-FTE-12",
    "U-X-FTE-EXP",
    "U-X-FTE-KEY",
    "U-X-NAME-NUL",
    "U-X-NAME-PNR",
    "U-X-FTE-NUL-KEY",
    "U-X-CATCHMENT",
]


def test_crafted_unit_events_and_reference_records_are_dead_letters(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    """Crafted unit events (FTE as identity-number floats, NUL and look-alikes in names, keys
    and catchments), official deaths, population and targets among valid ones and valid
    surveys: one dead letter each; nothing of them in unit_events, published.unit_state or the
    indicators; the valid ones stored; the same accounting, leak and commit checks."""
    s = isolated.settings
    fte = unit_event("x")["staff_fte"]
    valid_units = [
        unit_event("U-0980-SAH"),
        unit_event(
            "U-0180-KONS",
            region_code="01",
            municipality_code="0180",
            name="Palliativt konsultteam Stockholm",
            kind="consult_team",
            catchment_municipalities=["0180"],
            hours="office_hours",
        ),
        unit_event(
            "U-1480-SLUT",
            region_code="14",
            municipality_code="1480",
            kind="inpatient_hospital",
            beds=12,
            catchment_municipalities=["1480"],
            name="Slutenvård Göteborg",
        ),
        unit_event("U-0980-SAH", effective_date="2025-01-01", beds=2),
    ]
    crafted_units = [
        unit_event("U-X-FTE", staff_fte={**fte, "specialist_nurses": 1212121212.0}),
        unit_event("U-X-FTE-12", staff_fte={**fte, "nurses": 121212121212.0}),
        unit_event("U-X-FTE-EXP"),
        unit_event("U-X-FTE-KEY", staff_fte={**fte, PNR_SHORT.translate(SUPERSCRIPT): 1.0}),
        unit_event("U-X-NAME-NUL", name="Enhet\x00"),
        unit_event("U-X-NAME-PNR", name="Enhet 121212\u20131212"),
        unit_event("U-X-FTE-NUL-KEY", staff_fte={**fte, "nurses\x00": 1.0}),
        unit_event(
            "U-X-CATCHMENT", catchment_municipalities=["0980", PNR_SHORT.translate(FULLWIDTH)]
        ),
    ]
    assert [u["unit_id"] for u in crafted_units] == CRAFTED_UNIT_IDS
    unit_records = []
    for u in crafted_units:
        if u["unit_id"] == "U-X-FTE-EXP":
            value: dict[str, Any] | bytes = _with_raw(
                u, "staff_fte.physicians", b"1.21212121212e11"
            )
        else:
            value = u
        nul = u["unit_id"] in ("U-X-NAME-NUL", "U-X-FTE-NUL-KEY")
        reason = UNSTORABLE if nul else IDENTITY
        unit_records.append(
            _rec(UNIT_EVENTS, u["unit_id"], value, reason, key=u["unit_id"].encode())
        )

    valid_official = [
        official("09", "2025-03", 61),
        official("01", "2025-03", 1410),
        official("09", "2025-04", 58),
    ]
    crafted_official = [
        _rec(
            OFFICIAL_DEATHS,
            "o-source",
            official("14", "2025-03", 900, source=f"SCB {PNR_LONG.replace('-', chr(0x2011))}"),
            IDENTITY,
        ),
        _rec(OFFICIAL_DEATHS, "o-deaths", official("14", "2025-04", 1212121212), IDENTITY),
        _rec(
            OFFICIAL_DEATHS, "o-nul", official("14", "2025-05", 910, source="SCB\x00"), UNSTORABLE
        ),
    ]
    valid_population = [
        population("0980", 2024, 60791),
        population("0180", 2024, 984748),
        population("1480", 2024, 607882),
    ]
    crafted_population = [
        _rec(POPULATION, "p-int", population("0980", 2025, 1212121212), IDENTITY),
        _rec(
            POPULATION,
            "p-float-extra",
            population("0180", 2025, 990000, note=1212121212.0),
            IDENTITY,
        ),
    ]
    valid_targets = [
        target("eol_conversation", "national", 0.97),
        target("pain_assessed", "09", 0.9),
    ]
    crafted_targets = [
        _rec(
            TARGETS, "t-value", target("oral_health_assessed", "national", 1212121212.0), IDENTITY
        ),
        _rec(
            TARGETS,
            "t-warn-exp",
            _with_raw(target("prn_opioid", "national", 0.9), "warn_value", b"1.21212121212e11"),
            IDENTITY,
            key=b"prn_opioid:national",
        ),
        _rec(
            TARGETS,
            "t-source-nul",
            target("individual_plan", "national", 0.9, source="SoS\x00"),
            UNSTORABLE,
        ),
    ]

    def valid_records(spec: TopicSpec, values: list[dict[str, Any]]) -> list[Record]:
        return [_rec(spec, f"valid {spec.key_for(v).decode()}", v, None) for v in values]

    # Valid surveys around everything, so the survey path runs too.
    surveys_before = [valid_survey(f"w-{i}") for i in range(3)]
    surveys_after = [valid_survey(f"w-{i}") for i in range(3, 6)]
    units = valid_records(UNIT_EVENTS, valid_units)
    records = [
        *surveys_before,
        *_mix(units, unit_records, before=1, after=1),
        *_mix(valid_records(OFFICIAL_DEATHS, valid_official), crafted_official, before=1, after=1),
        *_mix(valid_records(POPULATION, valid_population), crafted_population, before=1, after=1),
        *_mix(valid_records(TARGETS, valid_targets), crafted_targets, before=1, after=1),
        *surveys_after,
    ]
    crafted = [r for r in records if r.reason is not None]
    assert len(crafted) == len(unit_records) + len(crafted_official) + len(
        crafted_population
    ) + len(crafted_targets)

    # The migrations seed targets; the valid ones sent add to their history.
    with psycopg.connect(s.database_url) as conn:
        seeded = conn.execute("SELECT indicator_id, scope, valid_from, value FROM targets")
        targets_expected = {(i, scope, since): value for i, scope, since, value in seeded}
    for t in valid_targets:
        since = date.fromisoformat(t["valid_from"])
        targets_expected[(t["indicator_id"], t["scope"], since)] = t["value"]
    wait_for_metrics(isolated, worker)
    sent = produce(s, records)

    def stored_counts() -> dict[str, int]:
        with psycopg.connect(s.database_url) as conn:
            return {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in ("surveys", "unit_events", "official_deaths", "population", "targets")
            }

    expected_counts = {
        "surveys": 6,
        "unit_events": len(valid_units),
        "official_deaths": len(valid_official),
        "population": len(valid_population),
        "targets": len(targets_expected),
    }
    settle(
        lambda: balanced(accounting(s, records)) and stored_counts() == expected_counts, 120, worker
    )
    worker.assert_alive()

    problems = check_dead_letters(s, sent)
    expect(problems, "rows stored", stored_counts(), expected_counts)
    with psycopg.connect(s.owner_url) as conn:  # the tables and the published views

        def rows(sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        expect(
            problems,
            "unit_events",
            rows("SELECT unit_id, effective_date, beds FROM unit_events ORDER BY 1, 2"),
            [
                ("U-0180-KONS", date(2024, 1, 1), 0),
                ("U-0980-SAH", date(2024, 1, 1), 0),
                ("U-0980-SAH", date(2025, 1, 1), 2),
                ("U-1480-SLUT", date(2024, 1, 1), 12),
            ],
        )
        expect(
            problems,
            "published.unit_state",
            rows("SELECT unit_id, beds FROM published.unit_state ORDER BY 1"),
            [("U-0180-KONS", 0), ("U-0980-SAH", 2), ("U-1480-SLUT", 12)],
        )
        expect(
            problems,
            "crafted units in unit_events or published.unit_state",
            rows(
                "SELECT unit_id FROM unit_events WHERE unit_id = ANY(%(ids)s) "
                "UNION ALL SELECT unit_id FROM published.unit_state WHERE unit_id = ANY(%(ids)s)",
                {"ids": CRAFTED_UNIT_IDS},
            ),
            [],
        )
        # No crafted number reached an indicator (FTE per 100 000, deaths, population).
        expect(
            problems,
            "published.indicator_series rows with a value of 1e9 or more",
            rows(
                "SELECT indicator_id, scope_code, value, numerator, denominator, n "
                "FROM published.indicator_series WHERE greatest(abs(value), abs(numerator), "
                "abs(denominator), abs(n), abs(ci_low), abs(ci_high), abs(nowcast)) >= 1e9"
            ),
            [],
        )
        expect(
            problems,
            "official_deaths",
            rows("SELECT region_code, month, deaths FROM official_deaths ORDER BY 1, 2"),
            [
                ("01", date(2025, 3, 1), 1410),
                ("09", date(2025, 3, 1), 61),
                ("09", date(2025, 4, 1), 58),
            ],
        )
        expect(
            problems,
            "population",
            rows("SELECT municipality_code, year, population FROM population ORDER BY 1"),
            [("0180", 2024, 984748), ("0980", 2024, 60791), ("1480", 2024, 607882)],
        )
        expect(
            problems,
            "targets",
            {
                (i, scope, since): value
                for i, scope, since, value in rows(
                    "SELECT indicator_id, scope, valid_from, value FROM targets"
                )
            },
            targets_expected,
        )
    acc = accounting(s, records)
    for spec in (DEATH_SURVEYS, UNIT_EVENTS, OFFICIAL_DEATHS, POPULATION, TARGETS):
        n_sent = sum(1 for r in records if r.spec is spec)
        n_dead = sum(1 for r in crafted if r.spec is spec)
        expected = {
            "sent": n_sent,
            "consumed": n_sent,
            "valid": n_sent - n_dead,
            "dead": n_dead,
            "stale": 0.0,
        }
        expect(problems, f"accounting of {spec.name}", acc[spec.name], expected)
    problems += check_nothing_leaked(isolated, worker, skip_topics=CONTRACT_TOPICS)
    problems += check_committed(isolated, worker)
    worker.assert_alive()
    assert not problems, "\n".join(problems) + f"\nworker log:\n{worker.log_tail(60)}"
