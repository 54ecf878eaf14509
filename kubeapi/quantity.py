"""Resource quantities ("100m", "1Gi", "2", "1.5", "1e3") as exact fractions, for the
API clients (the scheduler, the kubelet). The API server validates
quantities on its own side; this is the reading half, kept apart so clients never
import the server.

`parse_quantity` gives the value in base units (cores, bytes); `milli_value` rounds up
to thousandths, as `Quantity.MilliValue()` does, `value` rounds up to a whole unit as
`Quantity.Value()` does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
    "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}  # fmt: skip

_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


class QuantityError(ValueError):
    pass


def parse_quantity(text: str | int | float) -> Fraction:
    """The quantity's value in base units; QuantityError when it is not one."""
    if isinstance(text, bool):
        raise QuantityError(f"quantity {text!r}: not a number")
    if isinstance(text, int | float):
        return Fraction(str(text)) if isinstance(text, float) else Fraction(text)
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(f"quantity {text!r}: expected a number with an optional suffix")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    if exponent:
        return value * Fraction(10) ** int(exponent[1:])
    return value * _SUFFIXES[suffix or ""]


def milli_value(text: str | int | float) -> int:
    """Thousandths of the base unit (millicores), rounded up."""
    return math.ceil(parse_quantity(text) * 1000)


def value(text: str | int | float) -> int:
    """Whole base units (bytes, pods), rounded up."""
    return math.ceil(parse_quantity(text))
