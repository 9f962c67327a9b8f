"""keystead's counters as Prometheus metrics, through prometheus_client.

A custom collector reads ``KeyStore.stats()`` on each scrape, so nothing is counted twice and
the verify path does no extra work. Register it once per store handle::

    from prometheus_client import REGISTRY, start_http_server
    REGISTRY.register(KeysteadCollector(store))
    start_http_server(9100)

Run this file to print one scrape of a small demonstration store.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keystead import KeyStore

# (Stats field, metric name without the ``_total`` a counter gets, help text)
COUNTERS = [
    ("verify_errors", "keystead_verify_errors", "Verify calls that raised instead of answering."),
    ("cache_hits", "keystead_cache_hits", "Verifications answered without reading a key record."),
    ("cache_misses", "keystead_cache_misses", "Verifications that read a key record."),
    ("refreshes", "keystead_refreshes", "Reads of the store's change feed."),
    ("refresh_failures", "keystead_refresh_failures", "Change-feed reads that failed."),
    ("flushes", "keystead_flushes", "Batches of usage counts written to the store."),
    ("flush_failures", "keystead_flush_failures", "Usage writes that failed (retried)."),
]
GAUGES = [
    ("usage_pending", "keystead_usage_pending", "Uses counted in memory, not yet written."),
    ("cached_keys", "keystead_cached_keys", "Keys in the verify cache."),
]


class KeysteadCollector(Collector):
    """Prometheus metrics from one keystead store handle's ``stats()``."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        stats = self._store.stats()
        outcomes = CounterMetricFamily(
            "keystead_verifications",
            "Verifications by outcome.",
            labels=["outcome"],
        )
        for code, count in stats.outcomes.items():
            outcomes.add_metric([code], count)
        yield outcomes
        values = stats.as_dict()
        for field, name, help_text in COUNTERS:
            yield CounterMetricFamily(name, help_text, value=values[field])  # type: ignore[literal-required]
        for field, name, help_text in GAUGES:
            yield GaugeMetricFamily(name, help_text, value=values[field])  # type: ignore[literal-required]
        age = stats.last_refresh_age
        if age is not None:
            yield GaugeMetricFamily(
                "keystead_last_refresh_age_seconds",
                "Seconds since the verify path last read the change feed successfully.",
                value=age.total_seconds(),
            )


def scrape(store: KeyStore) -> str:
    """One scrape of ``store``'s metrics, in the Prometheus text format."""
    registry = CollectorRegistry()
    registry.register(KeysteadCollector(store))
    return generate_latest(registry).decode()


def main() -> None:
    with KeyStore("memory:") as store:
        created = store.create("demo", scopes=["chat:completions"])
        store.verify(created.key, ["chat:completions"])
        store.verify_header("Bearer not-a-key")
        print(scrape(store), end="")


if __name__ == "__main__":
    main()
