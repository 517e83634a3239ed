"""Request and response bodies of order-service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(gt=0, le=1_000_000)
    price: float = Field(ge=0, le=1_000_000, allow_inf_nan=False)


class CreateOrder(BaseModel):
    """What the gateway sends once stock is reserved. No email: this service has no use for it."""

    model_config = ConfigDict(extra="forbid")
    orderId: str = Field(min_length=1, max_length=64)
    userId: StrictInt = Field(gt=0)
    reservationId: str = Field(min_length=1, max_length=64)
    items: list[OrderLine] = Field(min_length=1, max_length=100)


class Order(BaseModel):
    orderId: str
    userId: int
    reservationId: str
    status: str
    total: float
    items: list[OrderLine]
    createdAt: str
