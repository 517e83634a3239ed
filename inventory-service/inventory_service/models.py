"""Request and response bodies of inventory-service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from servicekit.identifiers import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN
from servicekit.money import Money

Sku = Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)


class ReserveLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Sku
    quantity: StrictInt = Field(gt=0, le=1_000_000)


class ReserveRequest(BaseModel):
    """Reserve every line or none. ``reservationId`` makes a retry of the same call harmless."""

    model_config = ConfigDict(extra="forbid")
    reservationId: str = Field(min_length=1, max_length=64)
    items: list[ReserveLine] = Field(min_length=1, max_length=100)


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reservationId: str = Field(min_length=1, max_length=64)


class ReservedLine(BaseModel):
    """A reserved line and its unit price, from the catalogue (the caller sends none)."""

    sku: str
    quantity: int
    price: Money


class Reservation(BaseModel):
    reservationId: str
    status: str
    items: list[ReservedLine]


class Release(BaseModel):
    reservationId: str
    status: str
    items: list[ReserveLine]


class StockLevel(BaseModel):
    sku: str
    available: int
    price: Money
