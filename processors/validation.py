"""Validation of raw records into contract models, or a dead letter with a reason.

Pure: takes bytes, returns a model or a DeadLetter. Never raises on bad input. The payload kept in
a dead letter has anything shaped like a Swedish personal identity number redacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_KEPT_PAYLOAD_CHARS = 64 * 1024

Reason = Literal[
    "not_json", "payload_too_large", "contract_violation", "unsupported_schema_version"
]

# 6 or 8 date digits, optional separator (-, +), 4 digits: personnummer / samordningsnummer shape.
# Redaction is deliberately broad (no Luhn or date check) so nothing identity-like is kept.
_IDENTITY_LIKE = re.compile(r"(?<!\d)(\d{6}|\d{8})[-+]?\d{4}(?!\d)")
REDACTED = "[REDACTED]"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DeadLetter:
    reason: Reason
    detail: str

    def envelope(
        self, payload: bytes, topic: str, partition: int, offset: int
    ) -> dict[str, object]:
        text = payload[:MAX_KEPT_PAYLOAD_CHARS].decode("utf-8", errors="replace")
        return {
            "reason": self.reason,
            "detail": redact(self.detail),
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "received_at": datetime.now(UTC).isoformat(),
            "payload": redact(text),
            "payload_truncated": len(payload) > MAX_KEPT_PAYLOAD_CHARS,
        }


def redact(text: str) -> str:
    return _IDENTITY_LIKE.sub(REDACTED, text)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "record"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def parse(raw: bytes | None, model: type[M]) -> M | DeadLetter:
    if raw is None:
        return DeadLetter("not_json", "record has no value")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return DeadLetter("payload_too_large", f"value is {len(raw)} bytes (limit 1 MiB)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return DeadLetter("not_json", f"value is not JSON: {e}")
    if not isinstance(data, dict):
        return DeadLetter("contract_violation", "value is JSON but not an object")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != 1:
        return DeadLetter(
            "unsupported_schema_version",
            f"schema_version {version} is not supported (this worker reads major version 1)",
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        return DeadLetter("contract_violation", _describe(e))
