"""Validation of raw records into contract models, or a dead letter with a reason.

Pure: bytes and the current time in, a model or a DeadLetter out; never raises on bad input
(``parse`` is the boundary: anything it lets through was scanned and checked). Checks run in
this order, and the first failure is the reason:

  payload_too_large -> identity_number_in_payload -> not_utf8 -> not_json | too_deep
  -> duplicate_key -> not_an_object -> unstorable_character -> unsupported_schema_version
  -> contract_violation | unknown_code | municipality_outside_region | death_after_submission
     (pydantic, field named)
  -> death_in_future -> submitted_in_future -> outside_registration_window -> key_mismatch

The identity check comes first so that such a value never reaches a log line or a detail text,
whatever else is wrong with the record. It reads the record as text with JSON escapes resolved
and Unicode folded (schemas/identity.py), so truncated, non-UTF-8, deeply nested and look-alike
input is scanned too. ``duplicate_person`` is decided later, by the stateful admission step
(processors/admission.py, run by streams/agents/settle.py), because it needs every earlier
survey of the person; ``internal_error`` and ``database_rejected`` by the worker's stages.

What a valid record continues as is ``canonical(record)``: the model re-serialised, never the
raw input bytes, so downstream stages and tables see exactly what was checked.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from processors.catalogue import default_catalogue
from schemas.identity import (
    EXPONENT_NUMBER,
    JSON_STRING,
    MAX_CANDIDATES,
    exponent_values,
    fold,
    has_candidate,
    holds_identity_number,
    identity_number_fields,
    pseudonym_holds_identity_number,
    redact,
    redact_folded,
    scan_view,
    unescape_json,
)
from schemas.identity import REDACTED as REDACTED  # re-exported for callers of parse()
from schemas.models import SUPPORTED_SCHEMA_MAJOR, DeathSurvey

# The largest valid record of any contract is a few kB (a unit event with every municipality in
# its catchment is about 3 kB); the limit leaves twenty times that for newer minor shapes, and it
# bounds what one crafted record costs the screen (README, Benchmarks: worst case well under
# 20 ms). A bigger value is a dead letter, kept redacted.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_KEPT_PAYLOAD_CHARS = 64 * 1024
# The contracts nest three levels at most (a survey's measures) and hold a handful of objects
# and arrays; anything far deeper or larger is crafted (and walking it would cost the screen).
MAX_DEPTH = 16
MAX_CONTAINERS = 1000
# Registration is allowed up to 6 months after the death, and a registration may be corrected
# for some days after it (Svenska palliativregistret; both in processors/catalogue.toml).
# Validation is stateless and cannot see when revision 1 came, so later revisions get the
# window plus the correction period.
REGISTRATION_WINDOW = timedelta(days=default_catalogue().registration_window_days)
CORRECTION_PERIOD = timedelta(days=default_catalogue().correction_days)
# How far a submitted_at may lie ahead of the worker's clock (clocks of registry and worker
# differ a little); further is a dead letter. PALLIWATCH_CLOCK_SKEW_SECONDS overrides it.
DEFAULT_CLOCK_SKEW = timedelta(minutes=10)


class Reason(StrEnum):
    """Why a record is a dead letter. The documented enumeration (docs/contracts.md)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDENTITY_NUMBER_IN_PAYLOAD = "identity_number_in_payload"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEY = "duplicate_key"
    NOT_AN_OBJECT = "not_an_object"
    UNSTORABLE_CHARACTER = "unstorable_character"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    CONTRACT_VIOLATION = "contract_violation"
    UNKNOWN_CODE = "unknown_code"
    MUNICIPALITY_OUTSIDE_REGION = "municipality_outside_region"
    DEATH_AFTER_SUBMISSION = "death_after_submission"
    DEATH_IN_FUTURE = "death_in_future"
    SUBMITTED_IN_FUTURE = "submitted_in_future"
    OUTSIDE_REGISTRATION_WINDOW = "outside_registration_window"
    KEY_MISMATCH = "key_mismatch"
    DUPLICATE_PERSON = "duplicate_person"
    INTERNAL_ERROR = "internal_error"
    DATABASE_REJECTED = "database_rejected"


REASON_MEANINGS: dict[Reason, str] = {
    Reason.PAYLOAD_TOO_LARGE: "the value is larger than 64 KiB",
    Reason.IDENTITY_NUMBER_IN_PAYLOAD: (
        "the value or key holds something shaped like a Swedish personal identity number, in "
        "any form: strings, keys, numbers, escapes, look-alike digits and separators (redacted)"
    ),
    Reason.NOT_UTF8: "the value is not valid UTF-8",
    Reason.NOT_JSON: "the value is missing, not JSON, or truncated",
    Reason.TOO_DEEP: (
        f"the value nests objects or arrays more than {MAX_DEPTH} levels deep, or holds more "
        f"than {MAX_CONTAINERS} of them"
    ),
    Reason.DUPLICATE_KEY: "an object holds the same key twice",
    Reason.NOT_AN_OBJECT: "the value is JSON but not an object",
    Reason.UNSTORABLE_CHARACTER: "a string holds U+0000 (NUL), which PostgreSQL cannot store",
    Reason.UNSUPPORTED_SCHEMA_VERSION: "schema_version is a major version this worker cannot read",
    Reason.CONTRACT_VIOLATION: "a field is missing, of the wrong type, or outside its range/enum",
    Reason.UNKNOWN_CODE: "a region or municipality code that is not in the code list",
    Reason.MUNICIPALITY_OUTSIDE_REGION: "municipality_code does not belong to region_code",
    Reason.DEATH_AFTER_SUBMISSION: "date_of_death is after submitted_at",
    Reason.DEATH_IN_FUTURE: "date_of_death is after today",
    Reason.SUBMITTED_IN_FUTURE: (
        "submitted_at is later than the worker's clock by more than the clock-skew tolerance "
        "(10 minutes unless PALLIWATCH_CLOCK_SKEW_SECONDS says otherwise)"
    ),
    Reason.OUTSIDE_REGISTRATION_WINDOW: (
        f"submitted more than {REGISTRATION_WINDOW.days} days after the death "
        f"({(REGISTRATION_WINDOW + CORRECTION_PERIOD).days} for a later revision: corrections "
        f"are allowed for {CORRECTION_PERIOD.days} days after registration)"
    ),
    Reason.KEY_MISMATCH: "the record key is not the key the contract derives from the value",
    Reason.DUPLICATE_PERSON: "another active survey_id already exists for this person_ref",
    Reason.INTERNAL_ERROR: (
        "the worker failed on this record (exception class and redacted message in detail); "
        "the rest of its batch went on. Replay after the fix"
    ),
    Reason.DATABASE_REJECTED: (
        "PostgreSQL refused the record's rows (a data or integrity error, named in detail)"
    ),
}

_PYDANTIC_REASONS = {
    Reason.UNKNOWN_CODE.value,
    Reason.MUNICIPALITY_OUTSIDE_REGION.value,
    Reason.DEATH_AFTER_SUBMISSION.value,
}

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DeadLetter:
    reason: Reason
    detail: str

    def envelope(
        self,
        payload: bytes,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        received_at: datetime | None = None,
    ) -> dict[str, object]:
        return {
            "reason": self.reason.value,
            "detail": redact(self.detail),
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "source_key": None if key is None else redact_text(key.decode("utf-8", "replace")),
            "received_at": (received_at or datetime.now(UTC)).isoformat(),
            **kept_payload(payload),
        }


# The digest identifies a payload that could not be kept (the same payload twice, a payload an
# operator holds) without revealing it: keyed, so that guessing the identity number it held and
# hashing candidates does not work for someone who reads dead letters. The key is
# PALLIWATCH_DEAD_LETTER_DIGEST_KEY; without it one is made per process (digests then only
# compare within one run of the worker).
_DIGEST_KEY = os.environ.get("PALLIWATCH_DEAD_LETTER_DIGEST_KEY", "").encode() or os.urandom(32)
_PREFIX_CHARS = 200


# Hex spelled with letters: a hex digest holds digit runs that can look like identity numbers.
_LETTER_HEX = str.maketrans("0123456789", "ghijklmnop")


def payload_digest(payload: bytes) -> str:
    return hmac.new(_DIGEST_KEY, payload, hashlib.sha256).hexdigest().translate(_LETTER_HEX)


_PSEUDONYM_VALUE = re.compile(r'"person_ref"[ \t\n\r]*:[ \t\n\r]*("[0-9a-f]{64}")')


def _exempt_pseudonym(view: str) -> tuple[int, int] | None:
    """Where the person_ref pseudonym of a (folded, unescaped) record text is, quotes included,
    when it holds no 12-digit identity-number form (schemas/identity.py, person_ref): redaction
    leaves that one occurrence alone, or a dead letter with a chance digit run in its pseudonym
    could not be replayed."""
    m = _PSEUDONYM_VALUE.search(view)
    if m is None or pseudonym_holds_identity_number(m.group(1)[1:-1]):
        return None
    return m.start(1), m.end(1)


def _without_pseudonym(view: str) -> str:
    spot = _exempt_pseudonym(view)
    return view if spot is None else view[: spot[0]] + view[spot[1] :]


def _holds_candidate(kept: str) -> bool:
    """Whether a redacted text still holds a run of the layout (a text kept redacted is folded;
    unescaping it again may reveal more)."""
    again = unescape_json(kept)
    return has_candidate(_without_pseudonym(kept if again is kept else fold(again)))


def redact_text(text: str) -> str:
    """``text`` as a dead letter may keep it: unchanged when no form of it (escapes resolved,
    Unicode folded, exponent numbers as integers) holds a run of the identity-number layout;
    else that view with every such run replaced by [REDACTED]. Never raises, never recurses."""
    folded = fold(text)
    unescaped = unescape_json(text)
    view = folded if unescaped is text else fold(unescaped)
    exponent_hit = has_candidate(exponent_values(folded))
    spot = _exempt_pseudonym(view)
    probe = view if spot is None else view[: spot[0]] + view[spot[1] :]
    if not has_candidate(probe) and not exponent_hit:
        return text
    if spot is None:
        kept = redact_folded(view)
    else:  # quote-delimited: no run spans the pieces
        start, end = spot
        kept = redact_folded(view[:start]) + view[start:end] + redact_folded(view[end:])
    if exponent_hit:
        kept = EXPONENT_NUMBER.sub(REDACTED, kept)
    return kept


# Enough of a long payload to decide the kept text: a run of the layout that ends before the
# cut has all its context within it.
_HEAD_BYTES = MAX_KEPT_PAYLOAD_CHARS * 4 + 64
_RUN_TAIL = re.compile(r"[0-9+ -]+\Z")


def _readable_as_utf8(head: bytes, whole: bool) -> bool:
    """UTF-8 without NUL bytes. Anything else (UTF-16, UTF-32, stray bytes) is not kept as text
    at all: read as UTF-8 and redacted, it could still be read back in its own encoding with
    its digits whole (a character like U+2212 becomes bytes that break the run in the UTF-8
    reading only). ``head``: the payload's first _HEAD_BYTES; ``whole``: nothing follows."""
    if b"\x00" in head:
        return False
    try:
        codecs.utf_8_decode(head, "strict", whole)
    except UnicodeDecodeError:
        return False
    return True


def _cut(kept: str) -> str:
    """``kept`` cut to the limit, without a digit run the cut made (13 digits cut to 12 would
    make one that was none)."""
    cut = kept[:MAX_KEPT_PAYLOAD_CHARS]
    if not _RUN_TAIL.search(fold(cut[-64:])):
        return cut
    return _RUN_TAIL.sub("", fold(cut))  # folded, as a redacted text is


def _not_kept(payload: bytes, text: str) -> dict[str, object]:
    return {
        "payload": None,
        "payload_prefix": _printable_masked(text[:_PREFIX_CHARS]),
        "payload_bytes": len(payload),
        "payload_digest": payload_digest(payload),
        "payload_redacted": True,
        "payload_truncated": True,
    }


def _printable_masked(text: str) -> str:
    """Printable ASCII only, every digit (of any script: folded first) masked."""
    return re.sub(r"[^ -~]", "", re.sub(r"[0-9]", "#", fold(text)))


def kept_payload(payload: bytes) -> dict[str, object]:
    """The payload fields of a dead letter. The payload is kept as text when it holds nothing
    of the identity-number layout in any form (then it can be replayed as it was), redacted when
    it does. Only its length, a keyed digest and a prefix of printable ASCII with every digit
    masked are kept when it is not UTF-8 (or holds NUL bytes), and when the redacted text still
    held such a run (never seen; checked all the same)."""
    head = payload[:_HEAD_BYTES]
    text = head.decode("utf-8", errors="replace")
    if not _readable_as_utf8(head, len(head) == len(payload)):
        return _not_kept(payload, text)
    kept = redact_text(text)
    redacted = kept is not text
    if redacted and _holds_candidate(kept):
        return _not_kept(payload, kept)
    truncated = len(payload) > len(head) or len(kept) > MAX_KEPT_PAYLOAD_CHARS
    return {
        "payload": _cut(kept) if truncated else kept,
        "payload_bytes": len(payload),
        "payload_digest": payload_digest(payload),
        "payload_redacted": redacted,
        "payload_truncated": truncated,
    }


def canonical(record: BaseModel) -> bytes:
    """A validated record as it travels on: the model's own JSON (what was checked, nothing
    else; a duplicate key or an escape trick in the input is gone)."""
    return record.model_dump_json().encode()


def _describe(err: ValidationError) -> tuple[Reason, str]:
    errors = err.errors(include_url=False, include_input=False)
    reason = Reason.CONTRACT_VIOLATION
    for e in errors:
        if e["type"] in _PYDANTIC_REASONS:
            reason = Reason(e["type"])
            break
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "record"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return reason, redact("; ".join(parts) + more)


@dataclass
class _Shape:
    depth: int = 0
    members: int = 0
    containers: int = 0  # the walk stops past MAX_CONTAINERS
    too_many_numbers: bool = False  # more large floats than the scan checks one by one
    # Integer values of floats of 10 digits or more (1.21212121212e11 is 121212121212), for the
    # identity scan: a float written with an exponent shows no digit run in the text.
    large_floats: list[str] = field(default_factory=list)


def _shape(value: object) -> _Shape:
    """Nesting depth, object member count and large floats, without recursion (and without
    descending past MAX_DEPTH + 1, or past MAX_CONTAINERS objects and arrays: beyond either the
    record is rejected whatever it holds)."""
    shape = _Shape()
    stack: list[tuple[object, int]] = [(value, 1)]
    floats = shape.large_floats
    while stack:
        v, depth = stack.pop()
        shape.containers += 1
        if shape.containers > MAX_CONTAINERS:
            return shape
        if depth > shape.depth:
            shape.depth = depth
        if isinstance(v, dict):
            shape.members += len(v)
            items: Any = v.values()
        elif isinstance(v, list):
            items = v
        else:
            if isinstance(v, float) and 1e9 <= abs(v) < 1e13:
                floats.append(str(int(abs(v))))
            continue
        if depth > MAX_DEPTH:
            continue
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is float and 1e9 <= abs(item) < 1e13:
                if len(floats) >= MAX_CANDIDATES:
                    shape.too_many_numbers = True
                else:
                    floats.append(str(int(abs(item))))
    return shape


def _shape_of(text: str, data: object) -> _Shape:
    """``_shape`` of a parsed value; a text with far too many objects and arrays is judged by
    its brackets outside strings alone (counted in C), not walked."""
    if text.count("[") + text.count("{") > MAX_CONTAINERS:
        outside = JSON_STRING.sub('""', text)
        containers = outside.count("[") + outside.count("{")
        if containers > MAX_CONTAINERS:
            floats = exponent_values(text)
            return _Shape(containers=containers, large_floats=[floats] if floats else [])
    return _shape(data)


def _nul_field(value: object) -> str | None:
    """The first field path (keys included) whose text holds NUL; iterative."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return path or "value"
        elif isinstance(v, dict):
            for k, item in v.items():
                where = f"{path}.{k}" if path else str(k)
                if "\x00" in k:
                    return f"{where} (key)"
                stack.append((where, item))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(v))
    return None


_KEY_END = re.compile(r'"[ \t\n\r]*:')


def _has_duplicate_keys(text: str, members: int) -> bool:
    """Whether the text writes more object members than the parsed value holds. A fast count
    first: every key is followed by ``"`` and ``:`` with only JSON whitespace between, so that
    count is at least the keys written (a string holding ``" :`` only raises it), and equal to
    the members it proves there is no duplicate; else the colons outside strings decide. (A
    count of ``":`` alone is not enough: a key written ``"k" :`` is missed by it, and one such
    duplicate cancelled out the member it took away.)"""
    if len(_KEY_END.findall(text)) == members:
        return False
    return _member_count_in_text(text) != members


def _member_count_in_text(text: str) -> int:
    """Object members as written: the colons outside strings."""
    return JSON_STRING.sub('""', text).count(":")


_NAMED_DUPLICATES_TEXT = 16 * 1024


def _duplicate_keys(text: str) -> list[str]:
    """The keys written twice in one object (only called once a duplicate is known to exist;
    a long text is not parsed again just to name them)."""
    import json

    if len(text) > _NAMED_DUPLICATES_TEXT:
        return []
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _ in items:
            if k in seen and k not in found:
                found.append(k)
            seen.add(k)
        return dict(items)

    with contextlib.suppress(ValueError, RecursionError):
        json.loads(text, object_pairs_hook=pairs)
    return found


def _identity_view(text: str, data: Any, shape: _Shape | None) -> str:
    """What the identity scan reads: the text with escapes resolved and folded (scan_view),
    less one occurrence of a person_ref pseudonym that holds no 12-digit form
    (schemas/identity.py, person_ref). For parsed JSON, large floats come from the value."""
    if shape is None:
        view = scan_view(text)
    elif text.isascii() and "\\" not in text:
        # Valid JSON holds controls only as escapes, and whitespace only between tokens: folding
        # would change nothing a run of digits could use.
        view = text
    else:
        view = fold(unescape_json(text))
    if shape is not None and shape.large_floats:
        view = f"{view} {' '.join(shape.large_floats)}"
    ref = data.get("person_ref") if isinstance(data, dict) else None
    if isinstance(ref, str) and len(ref) == 64 and not pseudonym_holds_identity_number(ref):
        # One occurrence only, as a whole quoted string (a digit run cannot continue past its
        # quotes): the same value written again elsewhere (a note) is scanned.
        view = view.replace(f'"{ref}"', '""', 1)
    return view


_NOT_PARSED = object()


def parse(
    raw: bytes | None,
    model: type[M],
    now: datetime | None = None,
    key: bytes | None = None,
    expected_key: Any = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> M | DeadLetter:
    """Validate one record. ``expected_key(model) -> bytes`` enables the key check."""
    if raw is None:
        return DeadLetter(Reason.NOT_JSON, "record has no value")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return DeadLetter(
            Reason.PAYLOAD_TOO_LARGE, f"value is {len(raw)} bytes (limit {MAX_PAYLOAD_BYTES})"
        )
    text = raw.decode("utf-8", errors="replace")
    data: Any = _NOT_PARSED
    json_error: str | None = None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        json_error = str(e)
    shape = _shape_of(text, data) if data is not _NOT_PARSED else None
    if (shape is not None and shape.too_many_numbers) or holds_identity_number(
        _identity_view(text, data, shape)
    ):
        fields = identity_number_fields(data) if data is not _NOT_PARSED else []
        where = ", ".join(fields[:10]) if fields else "the value (not JSON; scanned as text)"
        return DeadLetter(
            Reason.IDENTITY_NUMBER_IN_PAYLOAD, f"identity-number-shaped value in: {where}"
        )
    if key is not None and holds_identity_number(scan_view(key.decode("utf-8", "replace"))):
        return DeadLetter(Reason.IDENTITY_NUMBER_IN_PAYLOAD, "identity-number-shaped record key")
    if json_error is not None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return DeadLetter(
                Reason.NOT_UTF8, f"byte {e.start} is not UTF-8 ({e.reason}); send UTF-8 JSON"
            )
        if "depth limit" in json_error or "recursion" in json_error.lower():
            return DeadLetter(Reason.TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels")
        return DeadLetter(Reason.NOT_JSON, f"value is not JSON: {redact(json_error)}")
    assert shape is not None
    if shape.containers > MAX_CONTAINERS:
        return DeadLetter(
            Reason.TOO_DEEP, f"more than {MAX_CONTAINERS} objects and arrays in one record"
        )
    if shape.depth > MAX_DEPTH:
        return DeadLetter(Reason.TOO_DEEP, f"nesting of {shape.depth} levels (limit {MAX_DEPTH})")
    if _has_duplicate_keys(text, shape.members):
        keys = ", ".join(repr(redact(k)) for k in _duplicate_keys(text)[:5]) or "a key"
        return DeadLetter(Reason.DUPLICATE_KEY, f"{keys} appears twice in one object")
    if not isinstance(data, dict):
        return DeadLetter(Reason.NOT_AN_OBJECT, f"value is a JSON {type(data).__name__}")
    # A NUL reaches a string only through the escape \u0000 (JSON forbids it raw).
    nul_field = _nul_field(data) if "\\u0000" in text else None
    if nul_field is not None:
        shown = redact(nul_field).replace("\x00", "\\u0000")
        return DeadLetter(
            Reason.UNSTORABLE_CHARACTER,
            f"{shown} holds U+0000 (NUL), which PostgreSQL cannot store",
        )
    version = data.get("schema_version")
    is_int = isinstance(version, int) and not isinstance(version, bool)
    if is_int and version != SUPPORTED_SCHEMA_MAJOR:
        return DeadLetter(
            Reason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version} is not supported (this worker reads major version "
            f"{SUPPORTED_SCHEMA_MAJOR}; newer minor shapes keep schema_version "
            f"{SUPPORTED_SCHEMA_MAJOR} and add optional fields)",
        )
    try:
        record = model.model_validate_json(raw)
    except ValidationError as e:
        return DeadLetter(*_describe(e))
    if isinstance(record, DeathSurvey):
        dead = survey_rules(record, now or datetime.now(UTC), clock_skew)
        if dead is not None:
            return dead
    if expected_key is not None and key != expected_key(record):
        return DeadLetter(
            Reason.KEY_MISMATCH,
            f"record key {redact((key or b'').decode('utf-8', 'replace'))!r} is not "
            f"{expected_key(record).decode()!r} derived from the value",
        )
    return record


def survey_rules(
    s: DeathSurvey, now: datetime, clock_skew: timedelta = DEFAULT_CLOCK_SKEW
) -> DeadLetter | None:
    """Business rules on a well-typed survey that need the clock."""
    if s.date_of_death > now.date():
        return DeadLetter(
            Reason.DEATH_IN_FUTURE,
            f"date_of_death {s.date_of_death} is after today ({now.date()})",
        )
    if s.submitted_at > now + clock_skew:
        return DeadLetter(
            Reason.SUBMITTED_IN_FUTURE,
            f"submitted_at {s.submitted_at.isoformat()} is {s.submitted_at - now} ahead of the "
            f"worker's clock (tolerance {clock_skew}); check the sender's clock",
        )
    delay = s.submitted_at.date() - s.date_of_death
    limit = REGISTRATION_WINDOW + (CORRECTION_PERIOD if s.revision > 1 else timedelta(0))
    if delay > limit:
        return DeadLetter(
            Reason.OUTSIDE_REGISTRATION_WINDOW,
            f"submitted_at is {delay.days} days after date_of_death (limit {limit.days} for "
            f"revision {s.revision})",
        )
    return None
