"""Person states as the worker keeps them (the ``people`` table and its changelog): JSON,
compressed with zstd and a dictionary trained on typical states.

A backfill of a million people keeps a million states in memory, most of the worker's memory.
Their JSON (processors/admission.py) is about 370 bytes, and alike from one person to the
next: the same keys, breakdown labels and counter vectors. With the dictionary one packs to
about 64 bytes (about 300 bytes less a person with Python's object overhead), in about 4 µs
each way. zlib with a preset dictionary packed as small but took 40 µs: it hashes its
dictionary anew for every value, where zstd prepares it once.

Format: ``b"\\x01"`` + a zstd frame without magic number, checksum or sizes, compressed with
``person_state_v1.zdict`` (scripts/make_person_zdict.py). A value that starts with ``{`` is
plain JSON, as earlier versions stored it; it is still read. The dictionary is fixed for good:
every stored state needs it to be read, so a new dictionary needs a new format byte (the worker
refuses to start with a changed file; ``tests/test_person_state.py`` pins its digest too).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import zstandard

V1 = 1
V1_PATH = Path(__file__).with_name("person_state_v1.zdict")
V1_DIGEST = "6b47998ae471bf2d079e51b11425e9df81702a2f3286ca095054cf1b8d3200a7"
# A state holds a few revisions of one survey: far below this.
MAX_STATE_BYTES = 1 << 20

_dictionary_bytes = V1_PATH.read_bytes()
if hashlib.sha256(_dictionary_bytes).hexdigest() != V1_DIGEST:
    raise RuntimeError(
        f"{V1_PATH} changed: stored person states cannot be read with another dictionary "
        "(restore it with `git checkout`; a new dictionary needs a new format byte)"
    )
_dictionary = zstandard.ZstdCompressionDict(_dictionary_bytes)
_compressor = zstandard.ZstdCompressor(
    dict_data=_dictionary,
    compression_params=zstandard.ZstdCompressionParameters.from_level(
        3,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=False,
        write_checksum=False,
        write_dict_id=False,
    ),
)
_decompressor = zstandard.ZstdDecompressor(
    dict_data=_dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS
)


def pack(state: dict[str, Any]) -> bytes:
    # The concatenation is a bytes object of its own size (orjson's output is not:
    # core.stored_json).
    return b"\x01" + _compressor.compress(orjson.dumps(state))


def unpack(raw: bytes) -> dict[str, Any]:
    if raw[:1] == b"{":
        return orjson.loads(raw)
    if raw[0] != V1:
        raise ValueError(f"unknown person state format {raw[0]}: written by a newer worker?")
    text = _decompressor.decompress(raw[1:], max_output_size=MAX_STATE_BYTES)
    return orjson.loads(text)
