"""Small typed helpers around Spark results that the stages read on the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row


def first_row(df: DataFrame) -> Row:
    """The one row of a global aggregation (Spark returns exactly one, even over an empty frame);
    None here would be a bug, so it fails loudly instead of as a TypeError further on."""
    row = df.first()
    if row is None:
        raise RuntimeError("a global aggregation returned no row")
    return row
