"""Request and response bodies of order-service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from servicekit.money import Money


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(gt=0, le=1_000_000)
    price: Money = Field(description="unit price from the catalogue (inventory-service)")


class CreateOrder(BaseModel):
    """What the gateway sends once stock is reserved, each line at the price inventory-service
    reserved it for. No email: this service has no use for it."""

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
    total: Money
    items: list[OrderLine]
    createdAt: str
