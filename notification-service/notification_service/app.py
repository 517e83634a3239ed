"""notification-service: answers 202 at once, then sends the notification in the background.

The send is its own span (``send_notification``), a child of the request's server span in the
same trace; it may end after the gateway has answered the client, which is the point: a slow
mail relay never delays an order. The recipient is kept only as a hash: no email in telemetry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, status
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from servicekit.app import ServiceApp, create_service_app
from servicekit.catalog import NOTIFICATION
from servicekit.dependencies import from_state
from servicekit.money import Money
from servicekit.redaction import ORDER_ID_HASH, order_id_hash
from servicekit.settings import ServiceSettings, service_faults, service_port
from servicekit.storage import UTC_NOW, Database

SERVICE_NAME = NOTIFICATION.name
log = logging.getLogger(__name__)
router = APIRouter(tags=["notifications"])

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS notifications (
    notification_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    recipient_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_at TEXT NOT NULL DEFAULT {UTC_NOW}
);
"""


class NotificationSettings(ServiceSettings):
    port: int = service_port(NOTIFICATION)
    faults: str = service_faults(NOTIFICATION)
    notify_send_delay_ms: int = Field(20, description="simulated mail relay latency")


class NotifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orderId: str = Field(min_length=1, max_length=64)
    email: EmailStr
    total: Money


class NotifyAccepted(BaseModel):
    notificationId: str
    status: str


def recipient_hash(email: str) -> str:
    """A stable, non-reversible recipient id for telemetry and storage."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


@dataclass
class Notifier:
    """Sends one notification, in the background, in a span of its own."""

    tracer: trace.Tracer
    db: Database
    send_delay_ms: int

    async def send_notification(
        self, notification_id: str, order_id: str, recipient: str, parent: trace.Span
    ) -> None:
        ctx = trace.set_span_in_context(parent)
        try:
            await self._send(ctx, notification_id, order_id, recipient)
        except Exception:  # already on the span (ERROR + exception event); the order stands
            log.warning(
                "notification %s for order %s failed", notification_id, order_id_hash(order_id)
            )

    async def _send(
        self, ctx: Context, notification_id: str, order_id: str, recipient: str
    ) -> None:
        with self.tracer.start_as_current_span("send_notification", context=ctx) as span:
            span.set_attributes(
                {
                    "notification.id": notification_id,
                    "notification.channel": "email",
                    "notification.recipient_hash": recipient,
                    ORDER_ID_HASH: order_id_hash(order_id),
                }
            )
            await asyncio.sleep(self.send_delay_ms / 1000)  # the mail relay round trip
            await self.db.call(self.record, notification_id, order_id, recipient)

    def record(self, notification_id: str, order_id: str, recipient: str) -> None:
        """Store one sent notification (one ``INSERT``)."""
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO notifications (notification_id, order_id, recipient_hash, status)"
                " VALUES (?, ?, ?, 'sent')",
                (notification_id, order_id, recipient),
            )


@router.post("/notify", status_code=status.HTTP_202_ACCEPTED)
async def notify(
    body: NotifyRequest,
    background: BackgroundTasks,
    notifier: Annotated[Notifier, from_state("notifier")],
) -> NotifyAccepted:
    notification_id = uuid.uuid4().hex
    background.add_task(
        notifier.send_notification,
        notification_id,
        body.orderId,
        recipient_hash(str(body.email)),
        trace.get_current_span(),
    )
    return NotifyAccepted(notificationId=notification_id, status="queued")


def create_app(
    settings: NotificationSettings | None = None, exporter: SpanExporter | None = None
) -> ServiceApp:
    settings = settings or NotificationSettings()
    app = create_service_app(SERVICE_NAME, settings, exporter)
    db = app.open_database(settings, "notifications.db", SCHEMA)
    app.state.notifier = Notifier(app.telemetry.tracer, db, settings.notify_send_delay_ms)
    app.include_router(router)
    return app
