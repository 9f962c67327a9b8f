"""The prometheus_client example (examples/prometheus_metrics.py): a scrape shows the counters
of ``stats()`` in the Prometheus text format, and they move between scrapes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

from prometheus_client.parser import text_string_to_metric_families

from keystead import KeyStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prometheus_metrics.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prometheus_metrics", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by name and labels (parsed by prometheus_client itself)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_scrape_shows_the_counters_and_they_move(store_path: Path) -> None:
    example = load_example()
    with KeyStore(store_path, flush_interval=timedelta(0)) as ks:
        created = ks.create("good")
        ks.verify(created.key)
        ks.verify(created.key)
        ks.verify("ks_typo")
        first = samples(example.scrape(ks))
        assert first[("keystead_verifications_total", (("outcome", "valid"),))] == 2
        assert first[("keystead_verifications_total", (("outcome", "malformed"),))] == 1
        assert first[("keystead_verifications_total", (("outcome", "expired"),))] == 0
        assert first[("keystead_cache_misses_total", ())] == 1
        assert first[("keystead_cache_hits_total", ())] == 1
        assert first[("keystead_usage_pending", ())] == 2
        assert first[("keystead_cached_keys", ())] == 1
        assert first[("keystead_flushes_total", ())] == 0
        assert first[("keystead_last_refresh_age_seconds", ())] >= 0

        ks.flush()
        second = samples(example.scrape(ks))
        assert second[("keystead_flushes_total", ())] == 1
        assert second[("keystead_usage_pending", ())] == 0
        assert created.key not in example.scrape(ks)


def test_the_example_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=True
    )
    parsed = samples(done.stdout)
    assert parsed[("keystead_verifications_total", (("outcome", "valid"),))] == 1
    assert parsed[("keystead_verifications_total", (("outcome", "malformed"),))] == 1
