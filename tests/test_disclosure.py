"""The Cell Key Method's pure core (processors/disclosure.py), and the SQL copy of its table."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.disclosure import (
    KEY_SPACE,
    MAX_PERTURBATION,
    PTABLE,
    RecordKeys,
    perturb,
    perturbation_distribution,
    public_coverage,
    public_received,
    public_share,
)
from streams import settings as settings_mod
from tests.conftest import Isolated
from tests.keys import KEYS

counts = st.integers(min_value=0, max_value=100_000)
key_sums = st.integers(min_value=-(10**15), max_value=10**15)


def test_every_row_is_a_distribution_with_zero_mean_and_no_negative_count() -> None:
    for row in PTABLE:
        assert abs(sum(row.probabilities) - 1) < 1e-12
        assert row.bounds[-1] == KEY_SPACE and list(row.bounds) == sorted(row.bounds)
        assert (
            abs(sum(e * p for e, p in zip(row.perturbations, row.probabilities, strict=True)))
            < 1e-9
        )
        # The key intervals hold the probabilities (to one key unit each).
        widths = [b - a for a, b in zip((0, *row.bounds[:-1]), row.bounds, strict=True)]
        for w, p in zip(widths, row.probabilities, strict=True):
            assert abs(w / KEY_SPACE - p) < 2 / KEY_SPACE
        assert min(row.count + e for e in row.perturbations) >= 0
    assert perturbation_distribution(0) == {0: 1.0}


def test_no_published_value_pins_a_small_count() -> None:
    """Every value a count of 1-4 can be published as is reachable from another count too."""
    reach: dict[int, set[int]] = {}
    for c in range(0, 12):
        for e in perturbation_distribution(c):
            reach.setdefault(c + e, set()).add(c)
    for c in range(1, 5):
        for e in perturbation_distribution(c):
            assert len(reach[c + e]) >= 2, (c, e)


@given(counts, key_sums)
def test_perturbation_is_bounded_and_depends_on_the_key_modulo_2_32(count: int, key: int) -> None:
    p = perturb(count, key)
    assert max(0, count - MAX_PERTURBATION) <= p <= count + MAX_PERTURBATION
    assert p == perturb(count, key + KEY_SPACE * 7) == perturb(count, key % KEY_SPACE)
    assert perturb(0, key) == 0


@given(st.integers(0, 5000), st.integers(0, 5000), key_sums, key_sums, st.integers(1, 30))
def test_public_share_is_a_share_of_perturbed_counts(
    num: int, extra: int, nk: int, dk: int, min_n: int
) -> None:
    den = num + extra
    value, p_num, p_den, n, low, high, suppressed = public_share(num, den, nk, dk, min_n)
    if den < min_n:
        assert suppressed
    if suppressed:
        assert value is None and p_num is None and n is None
        return
    assert p_den == perturb(den, dk) >= min_n and n == p_den
    assert p_num == min(perturb(num, nk), p_den)
    assert value is not None and 0 <= value <= 1
    assert low is not None and high is not None and low <= value <= high


def test_the_same_records_get_the_same_noise_and_a_record_more_gets_fresh_noise() -> None:
    people = [f"{i:064x}" for i in range(400)]
    keys = [KEYS(p) for p in people]
    same = [perturb(200, sum(keys[:200])) for _ in range(3)]
    assert len(set(same)) == 1
    # Growing a cell one record at a time: the noise of consecutive cells is independent, so
    # the published difference is not the true one (1) most of the time.
    diffs = [perturb(c + 1, sum(keys[: c + 1])) - perturb(c, sum(keys[:c])) for c in range(20, 399)]
    share_exact = sum(d == 1 for d in diffs) / len(diffs)
    assert 0.1 < share_exact < 0.35, share_exact  # P(e1 = e2) = 0.19 for the base row


def test_public_coverage_and_received() -> None:
    assert public_coverage(10, 0, 4, 5)[-1] is True  # official deaths under min_n
    v = public_coverage(90, KEYS("x" * 64), 100, 5)
    assert v[-1] is False and v[2] == 100.0 and v[1] == float(perturb(90, KEYS("x" * 64)))
    assert public_received(3, 123, 5) is None  # small, suppressed
    assert public_received(0, 0, 5) == 0


@given(st.text(min_size=1, max_size=80))
def test_record_keys_are_32_bit_and_need_the_secret(ref: str) -> None:
    k = KEYS(ref)
    assert 0 <= k < KEY_SPACE
    assert k == KEYS(ref)
    other = RecordKeys(b"another-secret-of-enough-bytes")
    assert other("a" * 64) != KEYS("a" * 64)


def test_record_keys_never_show_the_secret_and_refuse_a_short_one() -> None:
    assert "tests-only" not in repr(KEYS)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RecordKeys(b"short")


def test_the_secret_comes_from_a_file_or_is_made_once_locally(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-0123456789abcdef\n")
    monkeypatch.setenv("PALLIWATCH_CELL_KEY_SECRET_FILE", str(secret_file))
    s = settings_mod.load()
    assert s.cell_key_secret == b"from-a-file-0123456789abcdef"
    monkeypatch.delenv("PALLIWATCH_CELL_KEY_SECRET_FILE")
    monkeypatch.delenv("PALLIWATCH_CELL_KEY_SECRET")
    monkeypatch.setenv("PALLIWATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PALLIWATCH_DATABASE_URL", raising=False)
    local = settings_mod.load()
    first = local.record_keys()("a" * 64)
    made = tmp_path / "state" / "cell-key.secret"
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o600
    assert settings_mod.load().record_keys()("a" * 64) == first  # kept, not made anew
    monkeypatch.setenv("PALLIWATCH_DATABASE_URL", "postgresql://x@db.example/p")
    with pytest.raises(SystemExit, match="PALLIWATCH_CELL_KEY_SECRET"):
        settings_mod.load().record_keys()


def test_sql_perturbation_equals_python(isolated: Isolated) -> None:
    """The arrivals view perturbs in SQL, from the table seeded by every migrate."""
    cases = [(c, k) for c in (0, 1, 2, 3, 4, 5, 17, 1000) for k in (0, 1, 2**31, 2**32 - 1)]
    cases += [(c, KEYS(f"{c:064x}") * (c % 7 + 1)) for c in range(1, 400)]
    with psycopg.connect(isolated.settings.database_url) as conn:
        for count, key in cases:
            got = conn.execute("SELECT ckm_perturb(%s, %s)", (count, key)).fetchone()
            assert got == (perturb(count, key),), (count, key)


def test_docs_quote_the_table_and_its_cost() -> None:
    """docs/indicators.md prints the table and the cost in accuracy: both from the code."""
    import re

    from processors.disclosure import share_error
    from schemas.codes import regions
    from streams.settings import REPO_ROOT

    text = (REPO_ROOT / "docs" / "indicators.md").read_text(encoding="utf-8")
    for row in PTABLE[1:4]:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  | {row.count} |"))
        printed = [float(x) for x in re.findall(r"0\.\d{4}", line)]
        assert printed == [round(p, 4) for p in row.probabilities], line
    for code, name in (("09", "Gotland"), ("23", "Jämtland Härjedalen"), ("01", "Stockholm")):
        n = round(regions()[code].deaths_2024 * 0.6)
        mean, p95, top = share_error(round(n * 0.8), n)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name}, a year |"))
        assert f"| {n:,} |".replace(",", " ") in line, line
        assert f"| {mean * 100:.2f} pp | {p95 * 100:.2f} pp | {top * 100:.2f} pp |" in line, line
