"""Every collector config that ships carries its bounds, and every process gets only the secrets
it reads: checked on the files, without running anything.

One table, ``SHIPPED``: the local and compose collector (one file), the scale-out agent and
gateway (which the Helm chart ships through ``files/``). Each row says which tier receives the
config's batches, so the chain of sizes is checked too: a span the receivers take fits in one
batch, and no batch is larger than the next tier takes (else it would be refused there and lost
after its spans were acknowledged). The collector binaries load the same files in
``tests/e2e/test_backend_configs.py``; ``tests/reliability/test_collector_bounds.py`` measures
what the bounds do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servicekit.catalog import SECRET_VARIABLES, SERVICE_NAMES
from stackctl.stack import Stack, gomemlimit
from tests.compose_model import ROOT, compose, env_of, resolve_otel_config

MIB = 1 << 20
CHART = ROOT / "deploy" / "helm" / "otel-order-stack"
TRANSFORM = "transform/jaeger_limits"
# Badger refuses index keys over 65,000 bytes: an attribute value the collector lets through
# must stay well under it.
BADGER_KEY_LIMIT = 65_000


@dataclass(frozen=True)
class Shipped:
    config: Path
    # The config whose OTLP/gRPC receiver takes this one's batches (with its env defaults).
    next_tier: Path
    spanmetrics: str | None  # the connector's id, where the tier derives RED metrics
    chart_file: str | None  # the chart's files/ link to it


COLLECTOR = ROOT / "otel-collector"
SHIPPED = {
    "local and compose": Shipped(
        COLLECTOR / "config.yaml", ROOT / "jaeger" / "config.yaml", "span_metrics", None
    ),
    "scale-out agent": Shipped(
        COLLECTOR / "scale-out" / "agent.yaml",
        COLLECTOR / "scale-out" / "gateway.yaml",
        "spanmetrics",
        "agent.yaml",
    ),
    "scale-out gateway": Shipped(
        COLLECTOR / "scale-out" / "gateway.yaml",
        ROOT / "jaeger" / "scale-out" / "config-opensearch.yaml",
        None,
        "gateway.yaml",
    ),
}


def load(path: Path) -> dict[str, Any]:
    """A config with every ``${env:...}`` at its default (the resolver one is a mapping)."""
    return resolve_otel_config(path, {"OTELCOL_GATEWAY_RESOLVER": "{static: {hostnames: [x:1]}}"})


def otlp_protocols(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["receivers"]["otlp"]["protocols"]


def largest_request(config: dict[str, Any]) -> int:
    """Bytes of the largest OTLP request the config's receivers take (decoded)."""
    sizes = []
    for name, protocol in otlp_protocols(config).items():
        if name == "grpc":
            sizes.append(int(protocol["max_recv_msg_size_mib"]) * MIB)
        else:
            sizes.append(int(protocol["max_request_body_size"]))
    return max(sizes)


def export_batches(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch settings of every exporter that sends spans on to the next tier."""
    batches = []
    for name, exporter in config["exporters"].items():
        if name.startswith("loadbalancing"):
            # queued and batched at the exporter's own level, so a batch for a gateway that
            # left the ring is routed again: none per gateway
            assert exporter["protocol"]["otlp"]["sending_queue"] == {"enabled": False}
        elif not name.startswith("otlp"):
            continue
        batches.append(exporter["sending_queue"]["batch"])
    return batches


def traces_pipelines(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: pipeline
        for name, pipeline in config["service"]["pipelines"].items()
        if name.startswith("traces") and "otlp" in pipeline["receivers"]
    }


@pytest.fixture(params=list(SHIPPED), scope="module")
def shipped(request: pytest.FixtureRequest) -> tuple[Shipped, dict[str, Any]]:
    row = SHIPPED[request.param]
    return row, load(row.config)


def test_every_otlp_receiver_is_bounded_before_decoding(shipped) -> None:
    _, config = shipped
    for name, protocol in otlp_protocols(config).items():
        if name == "grpc":
            assert 0 < int(protocol["max_recv_msg_size_mib"]) <= 8, protocol
            assert 0 < int(protocol["max_concurrent_streams"]) <= 64, protocol
        else:
            assert 0 < int(protocol["max_request_body_size"]) <= 8 * MIB, protocol


def test_the_memory_limiter_comes_first_with_room_for_concurrent_maximum_requests(
    shipped,
) -> None:
    _, config = shipped
    limiter = config["processors"]["memory_limiter"]
    limit, spike = int(limiter["limit_mib"]), int(limiter["spike_limit_mib"])
    # The spike (room above the soft limit) holds at least 4 maximum requests being decoded
    # (about 3 times their size each: the body, the objects made from it, the copy a second
    # pipeline gets).
    assert spike * MIB >= 4 * 3 * largest_request(config), (limit, spike)
    assert spike < limit
    exporting = [p for p in traces_pipelines(config).values() if "span" not in str(p["exporters"])]
    assert exporting, "no pipeline sends spans on"
    for pipeline in exporting:
        assert pipeline["processors"][0] == "memory_limiter", pipeline


def test_spans_are_cut_to_what_jaeger_stores_where_they_enter(shipped) -> None:
    _, config = shipped
    statements = [
        line
        for group in config["processors"][TRANSFORM]["trace_statements"]
        for line in group["statements"]
    ]
    contexts = {g["context"] for g in config["processors"][TRANSFORM]["trace_statements"]}
    assert contexts == {"resource", "span", "spanevent"}
    limits = [int(m) for s in statements for m in re.findall(r"truncate_all\(attributes, (\d+)", s)]
    assert len(limits) == 3 and max(limits) * 4 < BADGER_KEY_LIMIT, statements
    assert sum("delete_matching_keys" in s for s in statements) == 3
    assert sum(s.startswith("set(name, ") for s in statements) == 2
    for pipeline in traces_pipelines(config).values():
        if pipeline["processors"][:1] == ["memory_limiter"]:
            assert pipeline["processors"][1] == TRANSFORM, pipeline


def test_batches_fit_every_accepted_span_and_the_next_tiers_receive_limit(shipped) -> None:
    row, config = shipped
    next_limit = int(otlp_protocols(load(row.next_tier))["grpc"]["max_recv_msg_size_mib"]) * MIB
    batches = export_batches(config)
    assert batches
    for batch in batches:
        assert batch["sizer"] == "bytes", batch
        assert largest_request(config) < int(batch["max_size"]) < next_limit, (batch, next_limit)


def test_span_metrics_are_capped_grouped_and_expire(shipped) -> None:
    row, config = shipped
    if row.spanmetrics is None:
        assert not any(k.startswith("spanmetrics") for k in config.get("connectors", {}))
        return
    connector = config["connectors"][row.spanmetrics]
    assert 0 < int(connector["aggregation_cardinality_limit"]) <= 1000
    assert connector["resource_metrics_key_attributes"] == ["otelcol.span_metrics.group"]
    assert connector["metrics_expiration"] and connector["series_expiration"]
    key = config["processors"]["transform/span_metrics_key"]["trace_statements"][0]["statements"]
    # The client's own value is removed first, then the group is one hex digit of a hash.
    assert key[0].startswith("delete_key(") and "Substring(SHA1(" in key[1] and ", 0, 1)" in key[1]
    pipelines = config["service"]["pipelines"]
    feeding = [p for p in pipelines.values() if row.spanmetrics in p.get("exporters", [])]
    assert [p["processors"] for p in feeding] == [["transform/span_metrics_key"]]
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["metric_expiration"]


def test_the_chart_ships_these_very_files() -> None:
    for row in SHIPPED.values():
        if row.chart_file:
            assert (CHART / "files" / row.chart_file).resolve() == row.config.resolve()
    configmaps = (CHART / "templates" / "configmaps.yaml").read_text()
    assert "agent.yaml" in configmaps and "gateway.yaml" in configmaps
    collectors = (CHART / "templates" / "collectors.yaml").read_text()
    assert collectors.count("(div (mul .Values.") == 2  # GOMEMLIMIT: 80 % of memoryLimitMiB


def test_compose_runs_the_local_config_with_gomemlimit_below_the_limit() -> None:
    model = compose()
    service = model["services"]["otel-collector"]
    assert any("otel-collector/config.yaml" in str(v) for v in service["volumes"])
    env = env_of(model, "otel-collector")
    assert env["GOMEMLIMIT"] == gomemlimit(int(env["OTELCOL_MEMORY_LIMIT_MIB"] or 0))


# --- secrets ------------------------------------------------------------------------------


def test_compose_gives_secrets_to_the_four_services_only() -> None:
    model = compose()
    for name in model["services"]:
        env = env_of(model, name)
        holds = {var for var in SECRET_VARIABLES if var in env}
        expected = set(SECRET_VARIABLES) if name in SERVICE_NAMES else set()
        assert holds == expected, name


def test_the_charts_backends_get_no_secret() -> None:
    """Only the services' template names a secret variable, and database.yaml, the Secret that
    holds DATABASE_URL (tests/scale_out/test_helm_chart.py checks the rendered objects)."""
    for template in (CHART / "templates").glob("*.yaml"):
        if template.name in ("services.yaml", "database.yaml"):
            continue
        text = template.read_text()
        assert not [var for var in SECRET_VARIABLES if var in text], template.name


def test_stackctl_withholds_secrets_from_every_process_but_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "from-the-shell")
    monkeypatch.setenv("DATABASE_URL", "postgresql://stack:pw-from-the-shell@127.0.0.1:5432/stack")
    stack = Stack(tmp_path / "run", tmp_path / "data", env={"ADMIN_TOKEN": "from-stackctl"})
    for process in stack.processes:
        env = process.environment()
        if process.name in SERVICE_NAMES:
            assert env["ADMIN_TOKEN"] == "from-stackctl", process.name
            assert "pw-from-the-shell" in env["DATABASE_URL"], process.name
        else:
            assert not [var for var in SECRET_VARIABLES if var in env], process.name
    assert {p.name for p in stack.processes} >= {"jaeger", "otel-collector", "trace-browser"}
