"""Month arithmetic for snapshot and scoring dates, anchored on the newest date."""

from __future__ import annotations

import calendar
import datetime as dt


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day `months` earlier, clamped to the month's length (31 Mar -> 28/29 Feb);
    a month end stays a month end (28 Feb -> 31 Jan)."""
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    month_end = day.day == _last_day(day.year, day.month)
    return dt.date(year, month, _last_day(year, month) if month_end else min(day.day, _last_day(year, month)))


def monthly_dates(start_date: dt.date, end_date: dt.date, cadence_months: int = 1) -> list[dt.date]:
    """end_date, end_date - cadence, ... down to start_date, returned ascending.

    Anchoring on the end keeps the newest date on the newest data, which is the one batch
    inference scores; stepping from the start would leave up to a month unscored.
    """
    if cadence_months < 1:
        raise ValueError(f"cadence_months must be >= 1, got {cadence_months}")
    dates, k = [], 0
    while (day := months_before(end_date, k * cadence_months)) >= start_date:
        dates.append(day)
        k += 1
    return sorted(dates)
