"""The four services of the stack, written once: name, package, environment prefix, port.

What lists the services derives from here: each service's settings (its port and faults
variables), the gateway's admin routes, ``stackctl`` (what `make up` starts, in which order, on
which ports), the compose checks and the tests. ``docker-compose.yml`` and ``Dockerfile``
cannot import it; ``tests/unit/test_compose_static.py`` checks them against it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # service.name, its folder and its compose service
    package: str  # `python -m <package>`
    env_prefix: str  # GATEWAY: GATEWAY_PORT, GATEWAY_FAULTS
    default_port: int

    @property
    def port_variable(self) -> str:
        return f"{self.env_prefix}_PORT"

    @property
    def faults_variable(self) -> str:
        return f"{self.env_prefix}_FAULTS"


INVENTORY = ServiceSpec("inventory-service", "inventory_service", "INVENTORY", 8081)
ORDER = ServiceSpec("order-service", "order_service", "ORDER", 8082)
NOTIFICATION = ServiceSpec("notification-service", "notification_service", "NOTIFICATION", 8083)
GATEWAY = ServiceSpec("api-gateway", "api_gateway", "GATEWAY", 8080)
# In start order: the gateway, which calls the other three, last.
SERVICES = (INVENTORY, ORDER, NOTIFICATION, GATEWAY)
SERVICE_NAMES = tuple(spec.name for spec in SERVICES)

# The environment variables that hold secrets. Only the four services read them (the bearer
# token of the fault admin routes, the database URL with its password); stackctl gives them to
# no other process, compose and the chart to no other container.
SECRET_VARIABLES = ("ADMIN_TOKEN", "DATABASE_URL")
