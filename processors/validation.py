"""Validation of raw records into contract models, or a dead letter with a reason.

Pure: bytes and the current time in, a model or a DeadLetter out; never raises on bad input.
Checks run in this order, and the first failure is the reason:

  payload_too_large -> identity_number_in_payload -> not_json -> not_an_object
  -> unsupported_schema_version -> contract_violation | unknown_code |
     municipality_outside_region | death_after_submission (pydantic, field named)
  -> death_in_future -> outside_registration_window -> key_mismatch

The identity check comes first so that such a value never reaches a log line or a detail text,
whatever else is wrong with the record. ``duplicate_person`` is decided later, by the stateful
admission step (streams/app.py), because it needs every earlier survey of the person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.identity import REDACTED as REDACTED  # re-exported for callers of parse()
from schemas.identity import identity_number_fields, redact
from schemas.models import SUPPORTED_SCHEMA_MAJOR, DeathSurvey

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_KEPT_PAYLOAD_CHARS = 64 * 1024
# Registration is allowed up to 6 months after the death, and a registration may be corrected
# for 10 days after it (Svenska palliativregistret). Validation is stateless and cannot see when
# revision 1 came, so later revisions get the window plus the correction period.
REGISTRATION_WINDOW = timedelta(days=183)
CORRECTION_PERIOD = timedelta(days=10)


class Reason(StrEnum):
    """Why a record is a dead letter. The documented enumeration (docs/contracts.md)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDENTITY_NUMBER_IN_PAYLOAD = "identity_number_in_payload"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    CONTRACT_VIOLATION = "contract_violation"
    UNKNOWN_CODE = "unknown_code"
    MUNICIPALITY_OUTSIDE_REGION = "municipality_outside_region"
    DEATH_AFTER_SUBMISSION = "death_after_submission"
    DEATH_IN_FUTURE = "death_in_future"
    OUTSIDE_REGISTRATION_WINDOW = "outside_registration_window"
    KEY_MISMATCH = "key_mismatch"
    DUPLICATE_PERSON = "duplicate_person"


REASON_MEANINGS: dict[Reason, str] = {
    Reason.PAYLOAD_TOO_LARGE: "the value is larger than 1 MiB",
    Reason.IDENTITY_NUMBER_IN_PAYLOAD: (
        "a string holds a value shaped like a Swedish personal identity number (redacted)"
    ),
    Reason.NOT_JSON: "the value is missing, not UTF-8 JSON, or truncated",
    Reason.NOT_AN_OBJECT: "the value is JSON but not an object",
    Reason.UNSUPPORTED_SCHEMA_VERSION: "schema_version is a major version this worker cannot read",
    Reason.CONTRACT_VIOLATION: "a field is missing, of the wrong type, or outside its range/enum",
    Reason.UNKNOWN_CODE: "a region or municipality code that is not in the code list",
    Reason.MUNICIPALITY_OUTSIDE_REGION: "municipality_code does not belong to region_code",
    Reason.DEATH_AFTER_SUBMISSION: "date_of_death is after submitted_at",
    Reason.DEATH_IN_FUTURE: "date_of_death is after today",
    Reason.OUTSIDE_REGISTRATION_WINDOW: (
        "submitted more than 183 days after the death (193 for a later revision: corrections "
        "are allowed for 10 days after registration)"
    ),
    Reason.KEY_MISMATCH: "the record key is not the key the contract derives from the value",
    Reason.DUPLICATE_PERSON: "another active survey_id already exists for this person_ref",
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
        # Redact before truncating: a number cut in half by the limit would escape the pattern,
        # and its check digit makes the missing digit recoverable.
        text = redact(canonical_text(payload))[:MAX_KEPT_PAYLOAD_CHARS]
        return {
            "reason": self.reason.value,
            "detail": redact(self.detail),
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "source_key": None if key is None else redact(key.decode("utf-8", errors="replace")),
            "received_at": (received_at or datetime.now(UTC)).isoformat(),
            "payload": text,
            "payload_truncated": len(payload) > MAX_KEPT_PAYLOAD_CHARS,
        }


def canonical_text(payload: bytes) -> str:
    """The payload as text with JSON escapes resolved, so that "\\u002d" cannot hide a
    separator from redaction; non-JSON payloads as they are."""
    try:
        return orjson.dumps(orjson.loads(payload)).decode()
    except (orjson.JSONDecodeError, TypeError):
        return payload.decode("utf-8", errors="replace")


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
    return reason, "; ".join(parts) + more


def parse(
    raw: bytes | None,
    model: type[M],
    now: datetime | None = None,
    key: bytes | None = None,
    expected_key: Any = None,
) -> M | DeadLetter:
    """Validate one record. ``expected_key(model) -> bytes`` enables the key check."""
    if raw is None:
        return DeadLetter(Reason.NOT_JSON, "record has no value")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return DeadLetter(Reason.PAYLOAD_TOO_LARGE, f"value is {len(raw)} bytes (limit 1 MiB)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if identity_number_fields(raw.decode("utf-8", errors="replace")):
            return DeadLetter(
                Reason.IDENTITY_NUMBER_IN_PAYLOAD,
                "value (not JSON) holds an identity-number-shaped string",
            )
        return DeadLetter(Reason.NOT_JSON, f"value is not JSON: {redact(str(e))}")
    fields = identity_number_fields(data)
    if key is not None:
        fields += ["record key"] if identity_number_fields(key.decode("utf-8", "replace")) else []
    if fields:
        return DeadLetter(
            Reason.IDENTITY_NUMBER_IN_PAYLOAD,
            f"identity-number-shaped value in: {', '.join(fields[:10])}",
        )
    if not isinstance(data, dict):
        return DeadLetter(Reason.NOT_AN_OBJECT, f"value is a JSON {type(data).__name__}")
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
        dead = survey_rules(record, now or datetime.now(UTC))
        if dead is not None:
            return dead
    if expected_key is not None and key != expected_key(record):
        return DeadLetter(
            Reason.KEY_MISMATCH,
            f"record key {redact((key or b'').decode('utf-8', 'replace'))!r} is not "
            f"{expected_key(record).decode()!r} derived from the value",
        )
    return record


def survey_rules(s: DeathSurvey, now: datetime) -> DeadLetter | None:
    """Business rules on a well-typed survey that need the clock."""
    if s.date_of_death > now.date():
        return DeadLetter(
            Reason.DEATH_IN_FUTURE,
            f"date_of_death {s.date_of_death} is after today ({now.date()})",
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
