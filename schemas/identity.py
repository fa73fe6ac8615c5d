"""Detecting and redacting values shaped like Swedish personal identity numbers.

A personnummer or samordningsnummer is 10 digits (YYMMDD-NNNC, separator ``-`` or ``+``) or
12 digits (YYYYMMDD-NNNC, separator optional). It is *shaped like* one when its date part is a
real date (coordination numbers add 60 to the day) and its last digit is the Luhn check digit of
the 10-digit form. palliwatch never needs such a value: a record holding one is dead-lettered and
the value is redacted before anything is written or logged.

Everything is scanned in its *folded* form (``fold``): Unicode NFKC (fullwidth, superscript and
circled digits become ASCII digits, every script's decimal digits too), every dash and minus
sign becomes ``-``, every space becomes `` ``, and invisible characters (format characters such
as soft hyphen and zero-width space, combining marks, controls such as NUL) are removed. A
separator is up to three of ``-``, ``+`` and space: ``121212 - 1212`` and ``121212--1212`` are
found. JSON text is scanned with its escapes resolved (``unescape_json``), so ``\\u002d`` hides
nothing, even in truncated JSON.

Redaction is deliberately broader than detection (any 10- or 12-digit run of that layout, check
digit or not), so a near miss is not written out either.

Every function here is linear in its input and runs in the regex engine or ``str.translate``,
never a Python loop over characters: a crafted record cannot make the screen slow.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from functools import cache

REDACTED = "[REDACTED]"
SEPARATORS = "-+ "
_SEP = r"[-+ ]{0,3}"
_CANDIDATE = re.compile(r"(?<![0-9])([0-9]{2})?([0-9]{6})(" + _SEP + r")([0-9]{4})(?![0-9])")


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


# ---- folding ----------------------------------------------------------------------------------

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Mn", "Me", "Co"})
_SPACE_CATEGORIES = frozenset({"Zs", "Zl", "Zp"})
_ASCII_SPACE_CONTROLS = "\t\n\r\x0b\x0c"


# Letters and symbols that render as nothing (Hangul fillers, the blank Braille pattern): removed
# like format characters, so they cannot hide the digits around them.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _fold_char(c: str) -> str:
    """What one character becomes in the folded text."""
    if c in _ASCII_SPACE_CONTROLS or c == "\x85":
        return " "
    category = unicodedata.category(c)
    if category in _INVISIBLE_CATEGORIES or c in _BLANK:
        return ""
    if category in _SPACE_CATEGORIES:
        return " "
    if category == "Pd" or c == "\u2212":  # every dash, and the minus sign
        return "-"
    decimal = unicodedata.decimal(c, None)
    if decimal is not None:
        return str(decimal)
    normal = unicodedata.normalize("NFKC", c)
    if normal == c:
        return c
    # The compatibility form may itself hold dashes, spaces or non-ASCII digits (U+207B
    # superscript minus becomes U+2212).
    return "".join(_fold_char(n) for n in normal)


@cache
def _fold_table() -> dict[int, str | None]:
    """str.translate table: every character that folds to something else (built once, ~0.5 s)."""
    table: dict[int, str | None] = {}
    for cp in range(0x110000):
        c = chr(cp)
        if cp < 0x80 and c not in _ASCII_SPACE_CONTROLS and unicodedata.category(c) != "Cc":
            continue
        folded = _fold_char(c)
        if folded != c:
            table[cp] = folded or None
    return table


_ASCII_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_FOLD = {cp: (" " if chr(cp) in _ASCII_SPACE_CONTROLS else None) for cp in range(0x20)}
_ASCII_FOLD[0x7F] = None


# The screen folds the same record text more than once (the scan, then the dead letter's
# redaction): the last few results are kept. A non-ASCII translate costs about 100 ns a
# character, a comparison of equal texts far less.
_FOLDED: dict[str, str] = {}
_FOLDED_KEPT = 4


def fold(text: str) -> str:
    """``text`` as the scan sees it (module docstring); ``text`` itself when nothing changes."""
    if text.isascii():
        if _ASCII_CONTROLS.search(text) is None:
            return text
        table: dict[int, str | None] = _ASCII_FOLD
    else:
        table = _fold_table()
    if len(text) < 256:
        return text.translate(table)
    folded = _FOLDED.get(text)
    if folded is None:
        folded = text.translate(table)
        if len(_FOLDED) >= _FOLDED_KEPT:
            _FOLDED.pop(next(iter(_FOLDED)))
        _FOLDED[text] = folded
    return folded


# ---- JSON escapes ---------------------------------------------------------------------------

# A backslash that does not start a \uXXXX escape, once the two-character escapes are gone.
_NOT_UNICODE_ESCAPE = re.compile(r"\\(?!u[0-9a-fA-F]{4})")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLACEHOLDER = "\uffff"  # a noncharacter: folds to itself, never a digit or a separator
_TWO_CHAR_ESCAPES = (
    ('\\"', '"'),
    ("\\/", "/"),
    ("\\b", "\b"),
    ("\\f", "\f"),
    ("\\n", "\n"),
    ("\\r", "\r"),
    ("\\t", "\t"),
)


def unescape_json(text: str) -> str:
    """``text`` with JSON string escapes resolved, left to right (``\\\\u002d`` stays a
    backslash and ``u002d``); works on truncated or otherwise broken JSON too, where a stray
    backslash stays. In C throughout (str.replace, a constant regex substitution, the
    unicode_escape codec): a text of escapes costs no Python per escape."""
    if "\\" not in text:
        return text
    out = text.replace("\\\\", _PLACEHOLDER)
    for escape, char in _TWO_CHAR_ESCAPES:
        out = out.replace(escape, char)
    out = _NOT_UNICODE_ESCAPE.sub(_PLACEHOLDER, out)
    if "\\u" in out:
        # Every backslash left starts \uXXXX; other characters pass through as escapes.
        out = out.encode("latin-1", "backslashreplace").decode("unicode_escape")
        if _SURROGATE.search(out):  # pairs of \uD8xx\uDCxx escapes make one character
            out = out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return out.replace(_PLACEHOLDER, "\\")


# Numbers in exponent form: 1.21212121212e11 is 121212121212. The integer values of the JSON
# numbers written so are scanned too (strings are taken out first: "670265e4" inside a hex
# digest is no number). The look-behind starts a match only at the start of a number: inside a
# long digit run every position fails at once, so the scan stays linear.
EXPONENT_NUMBER = re.compile(r"(?<![0-9A-Za-z_.])[0-9]+(?:\.[0-9]+)?[eE][-+]?[0-9]+")
# Strings of a JSON text, each matched whole from its opening quote (in valid JSON no quote
# occurs outside strings, so the matches stay aligned; in broken JSON an unclosed string stays).
# Possessive, and an unclosed string runs to the end: a match from any quote succeeds without
# backtracking, so broken JSON full of quotes stays linear too.
JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)


def exponent_values(text: str) -> str:
    """The integer values of the exponent-form numbers outside the strings of a JSON text,
    space separated."""
    if "e" not in text and "E" not in text:
        return ""
    values = []
    for m in EXPONENT_NUMBER.finditer(JSON_STRING.sub('""', text)):
        try:
            number = float(m.group())
        except (OverflowError, ValueError):
            continue
        if 1e9 <= abs(number) < 1e13:
            values.append(str(int(abs(number))))
    return " ".join(values)


def scan_view(text: str) -> str:
    """What the identity scan reads of a raw (JSON) text: escapes resolved, folded, and the
    integer values of numbers written with exponents appended."""
    folded = fold(text)
    unescaped = unescape_json(text)
    view = folded if unescaped is text else fold(unescaped)
    extra = exponent_values(folded)
    return f"{view} {extra}" if extra else view


# ---- detection and redaction ------------------------------------------------------------------

_SIX_DIGITS = re.compile(r"[0-9]{6}")


def _shaped(m: re.Match[str]) -> bool:
    century, yymmdd, sep, tail = m.groups()
    if century is not None and "+" in sep:
        return False  # the + separator (age 100+) exists only in the 10-digit form
    return _real_date(century, yymmdd) and luhn_ok(yymmdd + tail)


def find_in_folded(folded: str) -> list[str]:
    """Identity-number-shaped substrings of an already folded text."""
    if len(folded) < 10 or not _SIX_DIGITS.search(folded):
        return []
    return [m.group() for m in _candidates(folded) if _shaped(m)]


# More runs of the identity-number layout than this in one text is no honest record, and
# checking each (date and check digit, in Python) would let a crafted record make the screen
# slow: the text is then treated as holding one (it is redacted whole anyway).
MAX_CANDIDATES = 64


# Where a candidate can be: a digit followed by nine or more digits or separators. The regex
# engine finds these by their first character; the full pattern (with its look-behind, which
# defeats that search) then runs on them alone.
_RUN = re.compile(r"[0-9][0-9+ -]{9,}")


def _candidates(folded: str) -> Iterator[re.Match[str]]:
    for run in _RUN.finditer(folded):
        yield from _CANDIDATE.finditer(folded, run.start(), run.end())


def holds_identity_number(folded: str) -> bool:
    """Whether an already folded text holds an identity-number-shaped value (or more runs of
    the layout than MAX_CANDIDATES)."""
    if len(folded) < 10:
        return False
    return any(count >= MAX_CANDIDATES or _shaped(m) for count, m in enumerate(_candidates(folded)))


def find_identity_numbers(text: str) -> list[str]:
    """Every identity-number-shaped value in ``text``, in its folded form (module docstring)."""
    return find_in_folded(fold(text))


def contains_identity_number(text: str) -> bool:
    return holds_identity_number(fold(text))


def redact(text: str) -> str:
    """``text`` with every run of digits of the identity-number layout replaced by [REDACTED].

    When folding reveals a run that the text hides (look-alike digits, invisible characters),
    the folded text is returned, redacted: the exact characters of a payload that held an
    identity number are not worth keeping."""
    if len(text) < 10:
        return text
    folded = fold(text)
    if folded is text:
        return _CANDIDATE.sub(REDACTED, text)
    if not _CANDIDATE.search(folded):
        return text
    return _CANDIDATE.sub(REDACTED, folded)


def redact_folded(folded: str) -> str:
    """``redact`` of an already folded text."""
    return _CANDIDATE.sub(REDACTED, folded) if len(folded) >= 10 else folded


def has_candidate(folded: str) -> bool:
    """Whether redaction would change an already folded text."""
    return next(_candidates(folded), None) is not None


# ---- field paths of a decoded value --------------------------------------------------------


def walk_strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every string, key and large number anywhere in a decoded JSON
    value. Iterative: no nesting depth makes it raise."""
    stack: list[tuple[str, object]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            yield where or "value", v
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int):
            # A number is no identity number's proper type, but 191212121212 is one all the same.
            if abs(v) >= 10**9:
                yield where or "value", str(v)
        elif isinstance(v, float):
            if abs(v) >= 1e9:
                yield where or "value", repr(v) + (f" {int(abs(v))}" if abs(v) < 1e13 else "")
        elif isinstance(v, dict):
            for k, item in reversed(list(v.items())):
                # A path names fields, never values: a key holding a number is redacted in it.
                ks = str(k)
                shown = redact(ks)
                key_path = f"{where}.{shown}" if where else shown
                stack.append((key_path, item))
                if len(ks) >= 10:
                    stack.append((f"{key_path} (key)", ks))
        elif isinstance(v, list):
            for i in range(len(v) - 1, -1, -1):
                stack.append((f"{where}[{i}]", v[i]))


# person_ref is a 64-character hex pseudonym (a keyed digest). About 1 in 1 250 random digests
# holds a 10-digit run shaped like an identity number by chance (measured), so that form is
# tolerated inside one; a 12-digit form with a plausible century (18, 19, 20) is not: a digest
# holds one by chance about once in 160 000 (docs/contracts.md, "person_ref"), and a pseudonym
# never needs to look like one.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PSEUDONYM_FIELD = "person_ref"


def pseudonym_holds_identity_number(text: str) -> bool:
    """Whether a 64-hex pseudonym holds a 12-digit identity-number form with a century."""
    return any(
        len(found) >= 12 and found[:2] in ("18", "19", "20") for found in find_in_folded(text)
    )


def field_holds_identity_number(path: str, text: str) -> bool:
    if path == _PSEUDONYM_FIELD and _HEX64.fullmatch(text):
        return pseudonym_holds_identity_number(text)
    return contains_identity_number(text)


# Naming the fields is for the detail text only; past this many values the walk stops (a value
# with more is crafted, and is a dead letter whatever the names).
MAX_NAMED_VALUES = 256


def identity_number_fields(value: object, limit: int = 10) -> list[str]:
    """Field paths whose text holds an identity-number-shaped value (names, never values): at
    most ``limit``, from the first MAX_NAMED_VALUES values."""
    found: list[str] = []
    for seen, (path, text) in enumerate(walk_strings(value)):
        if seen >= MAX_NAMED_VALUES or len(found) >= limit:
            break
        if len(text) >= 10 and field_holds_identity_number(path, text):
            found.append(path)
    return found
