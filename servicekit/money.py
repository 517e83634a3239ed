"""Money: exact decimal amounts, in cents, written as JSON numbers.

Prices and totals are ``Decimal`` from the catalogue's text (``"50.00"``) to the order's total,
never binary floats: 3 x 0.10 is 0.30, and a line and the total always agree. On the wire an
amount is a JSON number with at most two decimals (``50.0``, ``0.3``), which every JSON parser
reads back to the same decimal; pydantic reads it from the JSON text straight into a
``Decimal``. Amounts past 10^12 are refused.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer

CENT = Decimal("0.01")
Money = Annotated[
    Decimal,
    Field(ge=0, lt=10**12, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]


def to_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half up to the cent."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
