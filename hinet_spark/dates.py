"""Dates as the jobs take them (``YYYY-MM-DD``): the one parser, its error text, ranges and shifts.

Imports nothing of the project but :mod:`hinet_spark.errors` (a leaf of the layer rule), so
the config, the command lines and the Spark stages all parse a date the same way.
"""

from __future__ import annotations

import datetime as dt

from hinet_spark.errors import OperatorError

MAX_SHOWN = 120  # characters of a bad value a message echoes


class DateError(OperatorError, ValueError):
    """A date argument or config value is not ``YYYY-MM-DD``, or a range runs backwards."""


def parse_date(value: object, what: str = "date") -> dt.date:
    """``value`` (``YYYY-MM-DD``, or a ``datetime.date``) as a date; the error names ``what``."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value)) if isinstance(value, str) else _refuse(value, what)
    except ValueError:
        return _refuse(value, what)


def _refuse(value: object, what: str) -> dt.date:
    shown = repr(value)
    if len(shown) > MAX_SHOWN:
        shown = f"{shown[:MAX_SHOWN]}... ({len(shown)} characters)"
    raise DateError(f"{what}: expected a date YYYY-MM-DD, got {shown}") from None


def parse_range(start: object, end: object, what: str = "dates") -> tuple[dt.date, dt.date]:
    """``(start, end)`` as dates, refusing ``start > end``."""
    a, b = parse_date(start, f"{what} start"), parse_date(end, f"{what} end")
    if a > b:
        raise DateError(f"empty date range: start {a} is after end {b}")
    return a, b


def shift(date: str | None, days: int, what: str = "date") -> str | None:
    """``date`` plus ``days`` as ``YYYY-MM-DD``; None stays None."""
    if date is None:
        return None
    return (parse_date(date, what) + dt.timedelta(days=days)).isoformat()


def day_range(a: dt.date, b: dt.date) -> list[dt.date]:
    """Every day from ``a`` to ``b``, both included."""
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]
