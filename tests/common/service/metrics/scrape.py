"""Reading `/metrics` answers in tests: the Prometheus text parsed into (name, labels) → value."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse(text: str) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels (all of them, no more), or None."""
    return series.get((name, frozenset(labels.items())))


def labelsets(series: Series, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in series if sample_name == name]


async def scrape(client: Any, path: str = "/metrics") -> Series:
    """GET /metrics with an aiohttp TestClient (no token), checked to be Prometheus text."""
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == CONTENT_TYPE
    return parse(await response.text())
