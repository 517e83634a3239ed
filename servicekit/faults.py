"""Fault injection, the same in every service: latency, error responses and timeouts.

Faults come from three places, all with one syntax (``kind:value[:probability]``, several joined
by ``|``, e.g. ``latency:200-400:0.5|error:503:0.1``):

* the environment: ``FAULTS`` (or ``<SERVICE>_FAULTS``), the service's standing faults;
* a request's W3C baggage: member ``fault.<service-name>`` (``baggage:
  fault.inventory-service=latency:800``) makes only that request slow or failing in that
  service, wherever it travels, because baggage is propagated on every hop. The public gateway
  drops such members from anonymous callers (:class:`servicekit.admin.ClientFaultBaggageFilter`);
* run time: ``POST /admin/faults`` (bearer ``ADMIN_TOKEN``), cleared after
  ``duration_seconds`` or by ``DELETE``.

An affected server span carries ``fault.injected=true``, ``fault.kind``, ``fault.value`` (and a
``fault.injected`` event), so a trace analyzer can be scored against the truth.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import baggage, trace
from pydantic import BaseModel, ConfigDict, Field

from servicekit.problems import problem_response

FaultKind = Literal["latency", "error", "timeout"]
MAX_LATENCY_MS = 60_000
BAGGAGE_PREFIX = "fault."  # baggage member fault.<service-name>
# Admin routes are never faulted: a fault must stay listable and clearable while it fires
# (a service's own /admin/faults, and the gateway's /api/admin/faults/{service}).
ADMIN_PREFIXES = ("/admin", "/api/admin")
_SPEC = re.compile(
    r"^(?P<kind>latency|error|timeout):(?P<value>\d{1,6}(?:-\d{1,6})?)(?::(?P<p>[01](?:\.\d+)?))?$"
)


class FaultSpec(BaseModel):
    """One fault. ``value``: latency ms (``300`` or a jitter range ``200-400``) or error status
    code (``503``); a timeout ignores it and hangs ``FAULT_TIMEOUT_MS``, longer than any
    caller's timeout. ``path_prefix`` limits it to some routes."""

    model_config = ConfigDict(extra="forbid")
    kind: FaultKind
    value: str = Field(pattern=r"^\d{1,6}(-\d{1,6})?$", examples=["300", "200-400", "503"])
    probability: float = Field(1.0, ge=0, le=1)
    path_prefix: str = Field("", max_length=200)

    def delay_seconds(self, rng: random.Random) -> float:
        low, _, high = self.value.partition("-")
        ms = rng.uniform(int(low), int(high)) if high else int(low)
        return min(ms, MAX_LATENCY_MS) / 1000

    def status(self) -> int:
        code = int(self.value.partition("-")[0])
        return code if 400 <= code <= 599 else 500


class FaultSpecError(ValueError):
    pass


def parse_faults(text: str) -> list[FaultSpec]:
    """Parse ``kind:value[:probability]|...``; raise :class:`FaultSpecError` naming the bad part."""
    faults = []
    for part in filter(None, (p.strip() for p in text.split("|"))):
        match = _SPEC.match(part)
        if match is None:
            raise FaultSpecError(f"bad fault {part!r}: expected kind:value[:probability]")
        faults.append(
            FaultSpec(
                kind=match["kind"],  # type: ignore[arg-type]
                value=match["value"],
                probability=float(match["p"]) if match["p"] else 1.0,
            )
        )
    return faults


class RuntimeFault(FaultSpec):
    duration_seconds: float = Field(60, gt=0, le=24 * 3600)


@dataclass
class ActiveFault:
    spec: FaultSpec
    source: str
    expires_at: float | None = None
    id: int = 0


@dataclass
class FaultInjector:
    """Decides, per request, which faults fire; holds standing and run-time faults."""

    service_name: str
    standing: list[FaultSpec] = field(default_factory=list)
    seed: int | None = None
    timeout_hang_ms: int = 30_000
    allow_baggage: bool = True
    runtime: list[ActiveFault] = field(default_factory=list)
    _next_id: int = 1

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add(self, fault: RuntimeFault) -> ActiveFault:
        spec = FaultSpec(**fault.model_dump(exclude={"duration_seconds"}))
        active = ActiveFault(
            spec, "admin", time.monotonic() + fault.duration_seconds, self._next_id
        )
        self._next_id += 1
        self.runtime.append(active)
        return active

    def clear(self) -> int:
        count = len(self.runtime)
        self.runtime.clear()
        return count

    def active(self) -> list[ActiveFault]:
        now = time.monotonic()
        self.runtime = [f for f in self.runtime if f.expires_at is None or f.expires_at > now]
        return [ActiveFault(s, "env") for s in self.standing] + self.runtime

    def _from_baggage(self) -> list[ActiveFault]:
        if not self.allow_baggage:
            return []
        value = baggage.get_baggage(f"{BAGGAGE_PREFIX}{self.service_name}")
        if not isinstance(value, str):
            return []
        try:
            return [ActiveFault(s, "baggage") for s in parse_faults(value)]
        except FaultSpecError:
            return []  # junk baggage from a client never breaks a request

    def firing(self, path: str) -> list[ActiveFault]:
        candidates = self.active() + self._from_baggage()
        return [
            f
            for f in candidates
            if path.startswith(f.spec.path_prefix) and self.rng.random() < f.spec.probability
        ]


class FaultMiddleware:
    """Apply the firing faults to a request, inside its server span."""

    def __init__(self, app, injector: FaultInjector, skip_paths: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.injector = injector
        self.skip_paths = skip_paths

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.skip_paths or path.startswith(ADMIN_PREFIXES):
            await self.app(scope, receive, send)
            return
        for fault in self.injector.firing(path):
            spec = fault.spec
            span = trace.get_current_span()
            span.set_attributes(
                {"fault.injected": True, "fault.kind": spec.kind, "fault.value": spec.value}
            )
            span.add_event(
                "fault.injected",
                {"fault.kind": spec.kind, "fault.value": spec.value, "fault.source": fault.source},
            )
            if spec.kind == "latency":
                await asyncio.sleep(spec.delay_seconds(self.injector.rng))
                continue
            if spec.kind == "timeout":
                await asyncio.sleep(self.injector.timeout_hang_ms / 1000)
                status, title = 504, "Injected timeout"
            else:
                status, title = spec.status(), "Injected error"
            detail = f"injected fault in {self.injector.service_name}: {spec.kind} {spec.value}"
            if status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR, detail))
            response = problem_response(status, title, detail, service=self.injector.service_name)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
