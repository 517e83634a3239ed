"""The public order API's bodies. Validation here is the only gate user input passes.

Prices are the catalogue's (inventory-service): a line's ``price`` in a request is optional and
not used; an answer's lines carry the price each unit was sold at and the total is their sum,
exact to the cent (:mod:`servicekit.money`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, field_validator

from servicekit.identifiers import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN
from servicekit.money import Money

MAX_ITEMS = 50
MAX_QUANTITY = 1000


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(
        min_length=1,
        max_length=IDENTIFIER_MAX_LENGTH,
        pattern=IDENTIFIER_PATTERN,
        examples=["SKU123"],
    )
    quantity: StrictInt = Field(gt=0, le=MAX_QUANTITY, examples=[2])
    price: float | None = Field(
        None,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        strict=True,
        examples=[50.0],
        description="ignored: the order is priced from the catalogue (GET /api/inventory/{sku})",
    )


class PricedLine(BaseModel):
    """A line as sold: ``price`` is the catalogue's unit price."""

    sku: str
    quantity: int
    price: Money


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: StrictInt = Field(gt=0, le=2**53, examples=[1])
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)
    email: EmailStr = Field(examples=["customer@example.com"])

    @field_validator("items")
    @classmethod
    def _distinct_skus(cls, items: list[OrderItem]) -> list[OrderItem]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku} appears twice; use one line with its quantity")
            seen.add(item.sku)
        return items


class OrderResponse(BaseModel):
    orderId: str
    traceId: str | None
    status: str
    total: Money
    userId: int
    items: list[PricedLine]
    notification: str


class StoredOrder(BaseModel):
    """``GET /api/orders/{orderId}``: what the client may know of a stored order (no internal
    ids such as the reservation's)."""

    orderId: str
    userId: int
    status: str
    total: Money
    items: list[PricedLine]
    createdAt: str
