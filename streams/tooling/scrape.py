"""Reading a worker's /metrics: prometheus_client's own parser, one reader for the CLI, the
benches and the tests."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    samples: tuple[Sample, ...]

    def total(self, name: str, **labels: str) -> float:
        """The sum of a sample over every series whose labels include ``labels``."""
        return sum(s.value for s in self.samples if s.name == name and _has(s, labels))

    def value(self, name: str, default: float, **labels: str) -> float:
        """A sample's value, ``default`` when the worker does not export it (yet)."""
        found = [s.value for s in self.samples if s.name == name and _has(s, labels)]
        return sum(found) if found else default

    def histogram(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) pairs of a histogram's buckets."""
        return sorted(
            (float(s.labels["le"]), s.value)
            for s in self.samples
            if s.name == f"{name}_bucket" and _has(s, labels)
        )


def _has(sample: Sample, labels: dict[str, str]) -> bool:
    return all(sample.labels.get(k) == v for k, v in labels.items())


def scrape(port: int, host: str = "127.0.0.1") -> Scrape | None:
    """Every sample the worker at ``port`` serves; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return Scrape(
        tuple(s for family in text_string_to_metric_families(text) for s in family.samples)
    )
