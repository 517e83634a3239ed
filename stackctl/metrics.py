"""The collector's own metrics (Prometheus text format), summed by name and labels.

The e2e tests and the benchmark read accepted, refused, sent and failed span counts from here
to prove that nothing was lost between the services and Jaeger.
"""

from __future__ import annotations

import re

import httpx

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample at ``url`` as (name, labels, value)."""
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    samples = []
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels`` (0 when absent).

    Counters are matched with or without the ``_total`` suffix: collector releases differ in
    whether their Prometheus exporter appends it.
    """
    name = name.removesuffix("_total")
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name.removesuffix("_total") == name
        and all(sample_labels.get(k) == v for k, v in labels.items())
    )


# Jaeger's own pipeline, on its metrics port: what its OTLP receiver accepted, and what its
# storage exporter wrote to Badger or failed to. A span Badger refuses (an index key over 65,000
# bytes, say) counts in ``store_failed`` and nowhere else: the collector has counted it as sent.
# The collector's exporter to Jaeger (otel-collector/config.yaml): the `exporter` label of its
# otelcol_exporter_* metrics.
JAEGER_EXPORTER = "otlp_grpc/jaeger"

JAEGER_SPAN_COUNTERS = {
    "accepted": ("otelcol_receiver_accepted_spans", {}),
    "stored": ("otelcol_exporter_sent_spans", {"exporter": "jaeger_storage_exporter"}),
    "store_failed": ("otelcol_exporter_send_failed_spans", {"exporter": "jaeger_storage_exporter"}),
}


def span_counts(url: str, counters: dict[str, tuple[str, dict[str, str]]]) -> dict[str, float]:
    """``counters`` (key: (metric name, labels)) read from the metrics at ``url``."""
    samples = scrape(url)
    return {key: total(samples, name, **labels) for key, (name, labels) in counters.items()}
