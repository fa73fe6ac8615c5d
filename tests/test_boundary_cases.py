"""The crafted records that once got through the ingestion boundary, one by one (pure: parse
and the dead-letter envelope; tests/test_boundary_attacks.py sends them through the real
pipeline, tests/test_boundary_fuzz.py fuzzes around them).

Every call runs under Python's default recursion limit (hypothesis raises it inside @given,
which once hid a RecursionError here)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from processors.validation import (
    MAX_DEPTH,
    DeadLetter,
    Reason,
    canonical,
    kept_payload,
    parse,
)
from schemas.identity import find_identity_numbers, fold, scan_view, unescape_json
from schemas.models import DeathSurvey, UnitEvent
from streams import failures
from tests.strategies import default_recursion_limit
from tests.test_validation import NOW, SURVEY, UNIT_EVENT, survey, survey_key

PNR_DIGITS = "1212121212"


def judge(raw: bytes, model: type = DeathSurvey, **kwargs: Any) -> DeadLetter:
    with default_recursion_limit():
        result = parse(raw, model, NOW, **kwargs)
    assert isinstance(result, DeadLetter), f"accepted: {raw[:200]!r}"
    return result


def leaks(text: str) -> bool:
    """Whether the digits of the test number survive in any form of ``text``."""
    view = fold(unescape_json(text))
    squeezed = "".join(c for c in view if c.isdigit())
    return PNR_DIGITS in squeezed.replace("0123456789", "") or bool(
        find_identity_numbers(scan_view(text))
    )


def envelope_text(dead: DeadLetter, raw: bytes, key: bytes | None = None) -> str:
    env = dead.envelope(raw, "registry.death-surveys.v1", 0, 7, key=key)
    return orjson.dumps(env).decode()


def without_pseudonym(text: str) -> str:
    return text.replace(SURVEY["person_ref"], "")


# ---- duplicate keys ------------------------------------------------------------------------


def test_a_duplicate_key_hiding_an_identity_number_is_caught_and_redacted() -> None:
    body = orjson.dumps(survey(note="ok"))[1:]
    raw = b'{"note":"121212-1212",' + body
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(without_pseudonym(envelope_text(d, raw)))


@pytest.mark.parametrize("colon", [" :", "\t:", "\n: ", "  :  "])
def test_a_duplicate_key_written_with_space_before_its_colon(colon: str) -> None:
    # A count of '":' alone missed a key written '"k" :', and one such duplicate cancelled out.
    other = "cd" * 32
    raw = orjson.dumps(survey())[:-1] + f', "person_ref"{colon}"{other}"}}'.encode()
    assert judge(raw).reason == Reason.DUPLICATE_KEY
    first = b'{"sex"' + colon.encode() + b'"female",' + orjson.dumps(survey())[1:]
    assert judge(first).reason == Reason.DUPLICATE_KEY


def test_a_duplicate_person_ref_is_a_duplicate_key() -> None:
    other = "ab" * 32
    raw = orjson.dumps(survey())[:-1] + f', "person_ref": "{other}"}}'.encode()
    d = judge(raw)
    assert d.reason == Reason.DUPLICATE_KEY
    assert "person_ref" in d.detail


def test_a_string_holding_key_like_text_is_not_a_duplicate() -> None:
    raw = orjson.dumps(survey(note='"a": 1, "b": {"note": 2}', other=["x", ":", "note"]))
    with default_recursion_limit():
        assert isinstance(parse(raw, DeathSurvey, NOW), DeathSurvey)


def test_the_record_travels_on_as_its_canonical_json() -> None:
    raw = b'{"note":"ok",' + orjson.dumps(survey(note="later"))[1:]
    # Not a duplicate: "note" appears once in the survey above (survey() has no note key yet).
    spaced = orjson.dumps(survey(), option=orjson.OPT_INDENT_2).replace(b"09", b"\\u00309")
    with default_recursion_limit():
        a = parse(spaced, DeathSurvey, NOW)
    assert isinstance(a, DeathSurvey)
    assert canonical(a) == a.model_dump_json().encode()
    assert b"\\u0030" not in canonical(a)
    assert judge(raw).reason == Reason.DUPLICATE_KEY


# ---- numbers that are not strings ------------------------------------------------------------


@pytest.mark.parametrize("number", [b"1212121212.0", b"1.21212121212e11", b"121212121212"])
def test_an_identity_number_as_a_number_is_caught(number: bytes) -> None:
    raw = orjson.dumps(survey())[:-1] + b', "note": ' + number + b"}"
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert "note" in d.detail
    assert not leaks(without_pseudonym(envelope_text(d, raw)))


def test_a_float_identity_number_in_staff_fte_is_caught() -> None:
    unit = {**UNIT_EVENT, "staff_fte": {**UNIT_EVENT["staff_fte"], "physician": 1212121212.0}}
    raw = orjson.dumps(unit)
    d = judge(raw, UnitEvent)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert "staff_fte" in d.detail
    assert not leaks(envelope_text(d, raw))


def test_many_large_floats_are_treated_as_holding_one() -> None:
    raw = orjson.dumps({**survey(), "x": [1.3e12 + i for i in range(200)]})
    assert judge(raw).reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD


# ---- look-alike characters -------------------------------------------------------------------

SEPARATORS = ["\u2013", "\u2212", "\u2010", "\u2011", "\uff0d", "\u00a0", " ", "\u00ad",
              "\u200b", "--", " - "]  # fmt: skip
DIGIT_FORMS = {
    "superscript": str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"),
    "circled": str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨"),
    "fullwidth": str.maketrans("0123456789", "０１２３４５６７８９"),
    "arabic-indic": str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"),
}


@pytest.mark.parametrize("sep", SEPARATORS)
def test_look_alike_separators(sep: str) -> None:
    raw = orjson.dumps(survey(note=f"pat 121212{sep}1212 x"))
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(without_pseudonym(envelope_text(d, raw)))


@pytest.mark.parametrize("form", sorted(DIGIT_FORMS))
def test_look_alike_digits(form: str) -> None:
    raw = orjson.dumps(survey(note="121212-1212".translate(DIGIT_FORMS[form])))
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(without_pseudonym(envelope_text(d, raw)))


@pytest.mark.parametrize(
    "between",
    ["\u200b", "\u0301", "\u0000", "\u2060", "\ufeff", "\u3164", "\u2800", "\uffa0", "\u034f"],
)
def test_invisible_characters_between_digits(between: str) -> None:
    raw = orjson.dumps(survey(note=between.join("121212-1212")))
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(without_pseudonym(envelope_text(d, raw)))


def test_an_identity_number_in_the_record_key_in_look_alike_digits() -> None:
    key = "１２１２１２－１２１２".encode()
    raw = orjson.dumps(survey())
    d = judge(raw, key=key, expected_key=survey_key)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(without_pseudonym(envelope_text(d, raw, key)))


# ---- redaction never falls back to the raw text ----------------------------------------------


def test_truncated_json_with_an_escaped_separator() -> None:
    raw = b'{"schema_version": 1, "note": "121212\\u002d1212'
    d = judge(raw)
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert not leaks(envelope_text(d, raw))


def test_a_number_nested_300_levels_deep() -> None:
    raw = b'{"note": ' + b"[" * 300 + b'"121212-1212"' + b"]" * 300 + b"}"
    d = judge(raw)
    assert d.reason in (Reason.IDENTITY_NUMBER_IN_PAYLOAD, Reason.TOO_DEEP)
    assert not leaks(envelope_text(d, raw))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_other_encodings(encoding: str) -> None:
    raw = orjson.dumps(survey(note="121212-1212")).decode().encode(encoding)
    d = judge(raw)
    assert d.reason in (Reason.IDENTITY_NUMBER_IN_PAYLOAD, Reason.NOT_UTF8)
    text = envelope_text(d, raw)
    assert not leaks(text.replace(SURVEY["person_ref"], ""))


def test_a_payload_that_cannot_be_redacted_keeps_only_length_digest_and_a_masked_prefix() -> None:
    # An escaped backslash before an escape: redacting the unescaped view leaves text that a
    # second unescape would turn into digits again; such a payload is not kept at all.
    raw = b'{"note": "\\\\u0031\\\\u0032' + b"\\\\u0031\\\\u0032" * 5 + b'"}'
    fields = kept_payload(raw)
    if fields["payload"] is None:
        assert fields["payload_bytes"] == len(raw)
        assert not any(c.isdigit() for c in str(fields["payload_prefix"]))
        assert not any(c.isdigit() for c in str(fields["payload_digest"]))
    assert not leaks(orjson.dumps(fields).decode())


def test_a_dead_letter_keeps_a_pseudonym_with_a_chance_digit_run_for_replay() -> None:
    ref = "0a" + "1234567890" + "b" * 52  # a 10-digit run: tolerated inside a pseudonym
    raw = orjson.dumps(survey(person_ref=ref, age_years=130))
    d = judge(raw)
    assert d.reason == Reason.CONTRACT_VIOLATION
    env = d.envelope(raw, "t", 0, 0)
    assert env["payload"] == raw.decode() and env["payload_redacted"] is False


def test_a_pseudonym_holding_a_12_digit_identity_number_is_rejected() -> None:
    ref = "191212121212" + "ab" * 26
    d = judge(orjson.dumps(survey(person_ref=ref)))
    assert d.reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD
    assert "person_ref" in d.detail


def test_the_pseudonym_exemption_covers_one_quoted_occurrence_only() -> None:
    # The same pseudonym again in a note, with a number continuing into it, is scanned.
    ref = "1212" + "ab" * 30
    raw = orjson.dumps(survey(person_ref=ref, note=f"121212-{ref}"))
    assert judge(raw).reason == Reason.IDENTITY_NUMBER_IN_PAYLOAD


# ---- what once stopped a worker --------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 30_000])
def test_deep_nesting_is_too_deep_not_a_crash(depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    assert judge(raw).reason == Reason.TOO_DEEP
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    assert judge(nested).reason in (Reason.TOO_DEEP, Reason.PAYLOAD_TOO_LARGE)


def test_many_containers_are_too_deep() -> None:
    raw = b"[" + b",".join([b"[]"] * 5000) + b"]"
    assert judge(raw).reason == Reason.TOO_DEEP


@pytest.mark.parametrize(
    "changes",
    [{"unit_id": "unit\x00"}, {"measures": {**SURVEY["measures"], "x\x00": True}}],
)
def test_nul_is_unstorable(changes: dict[str, Any]) -> None:
    d = judge(orjson.dumps(survey(**changes)))
    assert d.reason == Reason.UNSTORABLE_CHARACTER
    assert "\x00" not in d.detail


def test_a_nul_in_a_unit_name_is_unstorable() -> None:
    d = judge(orjson.dumps({**UNIT_EVENT, "name": "Hospice\x00"}), UnitEvent)
    assert d.reason == Reason.UNSTORABLE_CHARACTER


def test_non_utf8_is_not_utf8() -> None:
    assert judge(b'{"schema_version": 1, "x": "\xff"}').reason == Reason.NOT_UTF8


def test_submitted_in_the_future_beyond_the_skew() -> None:
    def at(offset: timedelta) -> bytes:
        t = (NOW + offset).isoformat().replace("+00:00", "Z")
        return orjson.dumps(survey(date_of_death=NOW.date().isoformat(), submitted_at=t))

    with default_recursion_limit():
        assert isinstance(parse(at(timedelta(minutes=9)), DeathSurvey, NOW), DeathSurvey)
        d = parse(at(timedelta(hours=1)), DeathSurvey, NOW)
        assert isinstance(d, DeadLetter) and d.reason == Reason.SUBMITTED_IN_FUTURE
        tolerant = parse(at(timedelta(hours=1)), DeathSurvey, NOW, clock_skew=timedelta(hours=2))
        assert isinstance(tolerant, DeathSurvey)


# ---- the stages' failures ---------------------------------------------------------------------


def test_an_internal_error_names_the_exception_and_redacts_its_message() -> None:
    dead = failures.internal_error("settle_surveys", ValueError("bad value 121212-1212 here"))
    assert dead.reason == Reason.INTERNAL_ERROR
    assert "ValueError" in dead.detail and "settle_surveys" in dead.detail
    assert "1212" not in dead.detail


def test_the_fault_plan() -> None:
    assert failures._plan("settle_surveys:record:3, screen:batch:1") == {
        ("settle_surveys", "record"): 3,
        ("screen", "batch"): 1,
    }
    with pytest.raises(SystemExit, match="stage:record:N"):
        failures._plan("settle:often:1")


def test_the_screen_bench_runs_at_a_tiny_size() -> None:
    from streams.tooling.bench_screen import bench_screen

    results = bench_screen(repeats=1, normal=20)
    assert results["normal_survey_us"] > 0
    assert len(results["crafted"]) >= 12
    outcomes = {r["outcome"] for r in results["crafted"].values()}
    assert "identity_number_in_payload" in outcomes and "too_deep" in outcomes
