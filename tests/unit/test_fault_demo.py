"""`make demo-faults` (stackctl/fault_demo.py): which admin token it uses, and what it tells a
user whose running stack cannot take faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from stackctl.fault_demo import ERROR, SLOW, DemoError, admin, check, resolve_token, verdicts


def fake_stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    return SimpleNamespace(run_dir=tmp_path / "run")


def test_token_from_the_environment_wins(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ADMIN_TOKEN", "from-env")
    assert resolve_token(fake_stack(tmp_path), running=True) == "from-env"


def test_a_new_token_is_saved_for_the_next_run(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    stack = fake_stack(tmp_path)
    token = resolve_token(stack, running=False)
    assert len(token) >= 24
    saved = stack.run_dir / "admin-token"
    assert saved.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert resolve_token(stack, running=True) == token


def test_a_running_stack_without_a_known_token_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    with pytest.raises(DemoError, match="make down && make demo-faults"):
        resolve_token(fake_stack(tmp_path), running=True)


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "started without ADMIN_TOKEN"), (401, "another ADMIN_TOKEN")],
)
def test_admin_routes_that_refuse_say_why(status: int, message: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json={}))
    with (
        httpx.Client(transport=transport, base_url="http://gateway") as client,
        pytest.raises(DemoError, match=message),
    ):
        admin(client, "GET", "order-service", "token")


def flagged(trace_id: str, slow: str | None = None, failed: str | None = None) -> dict:
    return {
        "trace_id": trace_id,
        "slow": slow is not None,
        "error": failed is not None,
        "culprit": {"service": slow} if slow else None,
        "error_origin": {"service": failed} if failed else None,
        # the ground truth the analyzer echoes: never taken as its verdict
        "faults": [{"service": "notification-service"}],
    }


def test_verdicts_count_only_the_analyzers_findings_on_the_demos_traces() -> None:
    report = {
        "traces": [
            flagged("a", slow="inventory-service", failed="order-service"),
            flagged("b", slow="inventory-service"),
            flagged("not-ours", failed="inventory-service"),
        ]
    }
    blamed = verdicts(report, {"a", "b"})
    assert blamed == {"inventory-service": Counter({SLOW: 2}), "order-service": Counter({ERROR: 1})}
    assert check(blamed, "inventory-service", "order-service") == []


def test_check_names_what_the_analyzer_got_wrong() -> None:
    blamed = {
        "inventory-service": Counter({SLOW: 3, ERROR: 1}),
        "api-gateway": Counter({ERROR: 2}),
    }
    assert check(blamed, "inventory-service", "order-service") == [
        "order-service (error fault) is not named for failing traces",
        "api-gateway is blamed but had no fault",
        "inventory-service is named as the origin of errors",
    ]


def _op(
    service: str,
    regressed: bool,
    errors: str | None = None,
    operation: str = "POST /x",
    p50_ms: float = 5.0,
    attribution: list[dict] | None = None,
) -> dict:
    return {
        "service": service,
        "operation": operation,
        "regressed": regressed,
        "latency": "regressed" if regressed and errors is None else None,
        "errors": errors,
        "change": {"p50_ms": p50_ms},
        "attribution": attribution or [],
    }


def _cause(service: str, change_ms: float) -> dict:
    return {"service": service, "operation": "POST /x", "change_ms": change_ms}


def test_regression_demo_check_names_what_is_wrong() -> None:
    from stackctl.regression_demo import check

    orders = ("api-gateway", True, None, "POST /api/orders")
    right = [
        _op("inventory-service", True, p50_ms=200),
        _op(*orders, p50_ms=190, attribution=[_cause("inventory-service", 200)]),
        # a few ms more elsewhere: the machine's load, reported but not a mismatch
        _op("order-service", True, p50_ms=6, attribution=[_cause("order-service", 5)]),
        _op("notification-service", False),
    ]
    assert check({"operations": right}, "inventory-service") == []
    assert check({"operations": right[1:2]}, "inventory-service") == [
        "no operation of inventory-service (latency fault) regressed"
    ]
    wrong = [
        _op("inventory-service", True, p50_ms=200),
        _op(*orders, p50_ms=190, attribution=[_cause("order-service", 150)]),
        _op("notification-service", True, errors="regressed"),
    ]
    assert check({"operations": wrong}, "inventory-service") == [
        "api-gateway POST /api/orders is attributed to order-service POST /x, not to "
        "inventory-service",
        "api-gateway POST /api/orders is attributed to order-service POST /x (+150.0 ms)",
        "notification-service POST /x regressed for errors, but only latency was injected",
    ]
    assert check({"operations": [right[0]]}, "inventory-service") == [
        "api-gateway POST /api/orders (the orders) did not regress"
    ]
