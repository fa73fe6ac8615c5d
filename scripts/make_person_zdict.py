"""Writes processors/person_state_v1.zdict: the zstd dictionary person states are compressed
with (processors/person_state.py), trained on simulated states. Kept for provenance: the file
must never change once states were written with it (a new dictionary needs a new format byte).

    .venv/bin/python scripts/make_person_zdict.py
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import zstandard

from processors.admission import admit
from processors.catalogue import default_catalogue
from processors.core import stored_json
from schemas.codes import regions
from schemas.models import DeathSurvey
from streams.tooling.simulator import SurveyFactory

SIZE = 8192
OUT = Path(__file__).resolve().parent.parent / "processors" / "person_state_v1.zdict"


def sample_states(n: int = 200) -> list[bytes]:
    cat = default_catalogue()
    factory = SurveyFactory(seed=11, id_prefix="reg")
    rng = random.Random(11)
    codes = list(regions())
    out = []
    for i in range(n):
        died = date(2025, 1, 1) + timedelta(days=rng.randrange(700))
        submitted = datetime.combine(died, datetime.min.time(), UTC)
        record = factory.survey(rng.choice(codes), died, submitted + timedelta(days=21))
        survey = DeathSurvey.model_validate(record)
        state = admit(None, rng.randrange(10**7) * 4096 + rng.randrange(4096), survey, cat).state
        if i % 5 == 0:  # a correction
            corrected = DeathSurvey.model_validate({**record, "revision": 2})
            state = admit(state, rng.randrange(10**7, 2 * 10**7) * 4096, corrected, cat).state
        out.append(stored_json(state))
    return out


def main() -> None:
    data = zstandard.train_dictionary(SIZE, sample_states(2000)).as_bytes()
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
