"""Detecting and redacting values shaped like Swedish personal identity numbers.

A personnummer or samordningsnummer is 10 digits (YYMMDD-NNNC, separator ``-`` or ``+``) or
12 digits (YYYYMMDD-NNNC, separator optional). It is *shaped like* one when its date part is a
real date (coordination numbers add 60 to the day) and its last digit is the Luhn check digit of
the 10-digit form. palliwatch never needs such a value: a record holding one is dead-lettered and
the value is redacted before anything is written or logged.

Redaction is deliberately broader than detection (any 10- or 12-digit run of that layout, check
digit or not), so a near miss is not written out either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from functools import cache

import orjson

_CANDIDATE = re.compile(r"(?<![0-9])([0-9]{2})?([0-9]{6})([-+]?)([0-9]{4})(?![0-9])")
REDACTED = "[REDACTED]"


def _real_date(century: str | None, yymmdd: str) -> bool:
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    if dd > 60:  # samordningsnummer: day + 60
        dd -= 60
    centuries = [int(century)] if century is not None else [18, 19, 20]
    for c in centuries:
        try:
            date(c * 100 + yy, mm, dd)
            return True
        except ValueError:
            continue
    return False


def luhn_ok(ten_digits: str) -> bool:
    total = 0
    for i, ch in enumerate(ten_digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@cache
def _digit_map() -> dict[int, int]:
    """Every Unicode decimal digit that is not ASCII, mapped to its ASCII digit."""
    return {
        cp: ord("0") + unicodedata.decimal(chr(cp))
        for cp in range(0x80, 0x110000)
        if unicodedata.decimal(chr(cp), None) is not None
    }


def _ascii_digits(text: str) -> str:
    # Char-for-char, so match positions in the result are positions in ``text``.
    return text if text.isascii() else text.translate(_digit_map())


# Runs of digits joined by separators: every candidate lies inside one (a candidate is digits
# with at most one separator, bounded by non-digits), so the full pattern only runs on these.
_RUNS = re.compile(r"[0-9]+(?:[-+][0-9]+)*")
# The same runs, found only where the next ten characters can belong to one (most digit runs in
# a record are dates, times and counts, far shorter): the regex engine skips them instead of a
# Python loop. A run of ten or more characters always passes the look-ahead, and no match starts
# inside a run the plain pattern would have matched whole.
_LONG_RUNS = re.compile(r"(?<![0-9])(?=[0-9+-]{10})" + _RUNS.pattern)


def find_identity_numbers(text: str) -> list[str]:
    """Every substring of ``text`` shaped like a personal identity number (any script's digits)."""
    found: list[str] = []
    if len(text) < 10:  # the shortest form has 10 digits; most fields are shorter enums
        return found
    probe = _ascii_digits(text)
    for run in _LONG_RUNS.finditer(probe):
        if run.end() - run.start() < 10:
            continue
        for m in _CANDIDATE.finditer(probe, run.start(), run.end()):
            century, yymmdd, sep, tail = m.groups()
            if century is not None and sep == "+":
                continue  # the + separator (age 100+) exists only in the 10-digit form
            if _real_date(century, yymmdd) and luhn_ok(yymmdd + tail):
                found.append(text[m.start() : m.end()])
    return found


def contains_identity_number(text: str) -> bool:
    return bool(find_identity_numbers(text))


def redact(text: str) -> str:
    """``text`` with every identity-number-shaped run of digits replaced by [REDACTED]."""
    if len(text) < 10:
        return text
    probe = _ascii_digits(text)
    if probe is text:
        return _CANDIDATE.sub(REDACTED, text)
    out, last = [], 0
    for m in _CANDIDATE.finditer(probe):
        out.append(text[last : m.start()])
        out.append(REDACTED)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def walk_strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, string) for every string anywhere in a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield path or "value", value
    elif isinstance(value, int) and not isinstance(value, bool):
        # A number is no identity number's proper type, but 191212121212 is one all the same.
        if abs(value) >= 10**9:
            yield path or "value", str(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            # A path names fields, never values: a key holding a number is redacted in it.
            ks = str(k)
            shown = redact(ks)
            key_path = f"{path}.{shown}" if path else shown
            if len(ks) >= 10:
                yield f"{key_path} (key)", ks
            yield from walk_strings(v, key_path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, f"{path}[{i}]")


def _may_hold_identity_number(value: object) -> bool:
    """One regex pass over the whole value serialised as JSON: a cheap pre-filter.

    Every string, key and integer of the value appears in its JSON text with escapes resolved,
    so when this finds nothing the field walk below would find nothing either; when it finds
    something, the walk decides (and names the fields).
    """
    if isinstance(value, dict) and _HEX64.fullmatch(str(value.get("person_ref", ""))):
        value = {k: v for k, v in value.items() if k != "person_ref"}  # exempt, see below
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    except TypeError:
        return True
    # Every form has a run of six digits; a plain search for one is far cheaper than the
    # full pattern with its look-arounds, and most records have none.
    if not _SIX_DIGITS.search(_ascii_digits(text)):
        return False
    return bool(find_identity_numbers(text))


_SIX_DIGITS = re.compile(r"[0-9]{6}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# person_ref is validated as a 64-character hex pseudonym; hex digests routinely contain digit
# runs that pass the shape test by chance, and a pseudonym is by construction not a number.
EXEMPT_FIELDS = frozenset({"person_ref"})


def identity_number_fields(value: object) -> list[str]:
    """Field paths whose string holds an identity-number-shaped value (names, never values)."""
    if not _may_hold_identity_number(value):
        return []
    hits = []
    for path, text in walk_strings(value):
        if path in EXEMPT_FIELDS and _HEX64.fullmatch(text):
            continue
        if contains_identity_number(text):
            hits.append(path)
    return hits
