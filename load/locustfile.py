"""A realistic order mix for the gateway: mostly orders, some out-of-stock, some reads.

Run headless through ``make load`` (``--users``, ``--spawn-rate``, ``--run-time`` bound it).
It refuses any target but loopback unless ``LOAD_ALLOW_REMOTE=1``: a load test aimed at the
wrong host is an incident.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from urllib.parse import urlparse

from locust import HttpUser, between, events, task

from stackctl.orders import order_body

SKUS = ["SKU123", "SKU456"]


@events.test_start.add_listener
def refuse_remote_targets(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    host = urlparse(environment.host or "").hostname or ""
    address = ipaddress.ip_address(socket.gethostbyname(host)) if host else None
    if os.environ.get("LOAD_ALLOW_REMOTE") != "1" and not (address and address.is_loopback):
        raise SystemExit(f"refusing to load {environment.host!r}: not loopback")


class Shopper(HttpUser):
    wait_time = between(0.05, 0.3)
    orders: list[str]

    def on_start(self) -> None:
        self.orders = []

    def _order(self, sku: str, quantity: int) -> dict:
        return order_body(
            sku,
            quantity,
            email="shopper@example.com",
            price=round(random.uniform(1, 90), 2),
            user_id=random.randint(1, 5000),
        )

    @task(8)
    def place_order(self) -> None:
        body = self._order(random.choice(SKUS), random.randint(1, 3))
        with self.client.post(
            "/api/orders", json=body, name="POST /api/orders", catch_response=True
        ) as response:
            if response.status_code == 201:
                self.orders.append(response.json()["orderId"])
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(1)
    def out_of_stock(self) -> None:
        with self.client.post(
            "/api/orders",
            json=self._order("OUT-OF-STOCK", 1),
            name="POST /api/orders (out of stock)",
            catch_response=True,
        ) as response:
            if response.status_code == 400:
                response.success()  # the expected answer
            else:
                response.failure(f"expected 400, got {response.status_code}")

    @task(2)
    def read_order(self) -> None:
        if self.orders:
            self.client.get(f"/api/orders/{random.choice(self.orders)}", name="GET /api/orders/:id")

    @task(1)
    def read_stock(self) -> None:
        self.client.get(f"/api/inventory/{random.choice(SKUS)}", name="GET /api/inventory/:sku")
