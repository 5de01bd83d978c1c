"""Change a rehearsal's source table the way an upstream change would, to drive the retrain branch.

`python -m integration_tests.drift_source <sc://server> <catalog.schema.table> <country> <YYYY-MM-DD> <price factor>`
multiplies the country's prices by the factor (a currency or unit change upstream: every revenue
feature shifts, purchase dates and so the repurchase labels do not) and appends one purchase on
the given day, a copy of the country's latest product line, which moves the latest transaction day
and so the date batch inference scores. One write through the same TableStore the stand-in catalog uses.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops.tables import TableName, VersionedCatalogTableStore


def main(remote: str, table: str, country: str, day: str, price_factor: str) -> None:
    spark = SparkSession.builder.remote(remote).getOrCreate()
    store = VersionedCatalogTableStore(spark)
    name = TableName.of(*table.split("."))
    source = store.read(name)
    in_country = F.col("Country") == F.lit(country)
    if float(price_factor) != 1.0:
        scaled = (F.col("Price").cast("decimal(18,4)") * F.lit(price_factor).cast("decimal(18,4)")).cast("string")
        source = source.withColumn("Price", F.when(in_country, scaled).otherwise(F.col("Price")))
    # a product line (stock codes of products start with a digit; postage and fees are cleaned away)
    sale = (
        in_country
        & F.col("`Customer ID`").isNotNull()
        & (F.col("Quantity").cast("int") > 0)
        & (F.col("Price").cast("double") > 0)
        & F.col("StockCode").rlike("^[0-9]")
    )
    latest = source.where(sale).orderBy(F.col("InvoiceDate").desc(), F.col("Invoice").desc()).limit(1)
    purchase = latest.withColumn("InvoiceDate", F.lit(f"{day} 10:00:00")).withColumn(
        "Invoice", F.lit("9" + day.replace("-", ""))
    )
    version = store.overwrite(name, source.unionByName(purchase))
    print(f"{name}: version {version}, prices x{price_factor} for {country}, one purchase on {day}")


if __name__ == "__main__":
    main(*sys.argv[1:])
