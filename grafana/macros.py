"""Expand Grafana's SQL macros and template variables the way Grafana does before a query reaches
PostgreSQL, so the tests can run every panel and alert query against the real database.

Follows Grafana's documented semantics for the PostgreSQL data source
(https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/#macros):
  $__time(col)           col AS "time"
  $__timeEpoch(col)      extract(epoch from col) AS "time"
  $__timeFilter(col)     col BETWEEN '<from RFC 3339>' AND '<to RFC 3339>'
  $__timeFrom()          '<from RFC 3339>'        $__timeTo()   '<to RFC 3339>'
  $__timeGroup(col, '5m')  floor(extract(epoch from col)/300)*300
  $__timeGroupAlias(col, '5m')  the same AS "time"
  $__unixEpochFilter(col)  col >= <from epoch> AND col <= <to epoch>
and the global variables $__interval (e.g. 5m) and $__interval_ms. Template variables ($name,
${name}, ${name:format}, [[name]]) are interpolated as the SQL data sources do: a single value
is inserted as is with single quotes doubled; a multi-value (list) becomes 'a','b'.
Anything that still looks like a macro or variable afterwards is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

Value = str | Sequence[str]


class MacroError(ValueError):
    pass


def rfc3339(t: datetime) -> str:
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_interval(d: timedelta) -> str:
    """Grafana's interval text: the largest unit that divides it (ms, s, m, h, d)."""
    ms = int(d.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_interval(text: str) -> timedelta:
    m = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d)'?\s*", text)
    if not m:
        raise MacroError(f"not an interval: {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {
        "ms": timedelta(milliseconds=n),
        "s": timedelta(seconds=n),
        "m": timedelta(minutes=n),
        "h": timedelta(hours=n),
        "d": timedelta(days=n),
    }[unit]


def _args(text: str) -> list[str]:
    return [a.strip() for a in text.split(",")] if text.strip() else []


def _quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _variable(value: Value, fmt: str | None) -> str:
    if isinstance(value, str):
        if fmt in ("singlequote", "sqlstring"):
            return _quote(value)
        return value.replace("'", "''")
    if fmt == "csv":
        return ",".join(value)
    return ",".join(_quote(v) for v in value)


_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval: timedelta = timedelta(minutes=1),
    variables: Mapping[str, Value] | None = None,
) -> str:
    variables = dict(variables or {})
    frm, to = rfc3339(time_from), rfc3339(time_to)

    def macro(m: re.Match[str]) -> str:
        name, args = m.group(1), _args(m.group(2))
        if name == "time":
            return f'{args[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
        if name == "timeFrom":
            return f"'{frm}'"
        if name == "timeTo":
            return f"'{to}'"
        if name in ("timeGroup", "timeGroupAlias"):
            step = int(parse_interval(args[1]).total_seconds())
            out = f"floor(extract(epoch from {args[0]})/{step})*{step}"
            return out + (' AS "time"' if name == "timeGroupAlias" else "")
        if name == "unixEpochFilter":
            return (
                f"{args[0]} >= {int(time_from.timestamp())} AND "
                f"{args[0]} <= {int(time_to.timestamp())}"
            )
        raise MacroError(f"unknown macro $__{name}")

    out = _MACRO.sub(macro, sql)
    builtins: dict[str, Value] = {
        "__interval": format_interval(interval),
        "__interval_ms": str(int(interval.total_seconds() * 1000)),
    }

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name in builtins:
            return _variable(builtins[name], m.group(2))
        if name not in variables:
            raise MacroError(f"undefined template variable ${name} in: {sql}")
        return _variable(variables[name], m.group(2))

    out = _VAR.sub(var, out)
    if "$__" in out:
        raise MacroError(f"unexpanded macro in: {out}")
    return out
