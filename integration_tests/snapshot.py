"""What a pipeline run left behind, in a form two runs can be compared by: row counts, a digest of
each table's keys, the champion's version, and the predictions themselves.

Used in-process for the local run and as `python -m integration_tests.snapshot <overrides>` for a
run on a remote server (a separate process: one Spark session kind per process).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from mlops.runtime import RunContext

TABLE_KEYS = {
    "transactions": ["invoice", "stock_code", "invoice_date", "customer_id"],
    "features": ["customer_id", "snapshot_date"],
    "labels": ["customer_id", "snapshot_date"],
    "train": ["customer_id", "snapshot_date"],
    "test": ["customer_id", "snapshot_date"],
    "scoring_features": ["customer_id", "scoring_date"],
    "predictions": ["customer_id", "scoring_date"],
    "monitoring": None,
}


def snapshot(ctx: RunContext) -> dict[str, Any]:
    from mlops.registry import alias_version, configure_mlflow, registered_model_name

    tables: dict[str, Any] = {}
    for key, keys in TABLE_KEYS.items():
        name = ctx.table_name(key)
        if not ctx.tables.exists(name):
            tables[key] = None
            continue
        df = ctx.tables.read(name)
        entry: dict[str, Any] = {"rows": df.count(), "columns": sorted(df.columns)}
        if keys:
            rows = sorted("|".join(str(row[k]) for k in keys) for row in df.select(*keys).collect())
            entry["key_digest"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        tables[key] = entry
    predictions = (
        sorted(  # lists, not tuples: the same shape after a JSON round trip
            [str(row["customer_id"]), str(row["scoring_date"]), int(row["prediction"]), round(float(row["score"]), 6)]
            for row in ctx.tables.read(ctx.table_name("predictions")).collect()
        )
        if tables["predictions"]
        else []
    )
    configure_mlflow(ctx.cfg)
    champion = alias_version(registered_model_name(ctx.cfg), "champion")
    return {
        "tables": tables,
        "predictions": predictions,
        "champion": None if champion is None else str(champion.version),
    }


def main(overrides: list[str]) -> None:
    from mlops.config import compose_config

    # this checkout's conf/: the package may be an installed wheel, which ships no config (the
    # scripts find theirs beside them, as a job's synced files do)
    cfg = compose_config(overrides, Path(__file__).resolve().parents[1] / "conf")
    print(json.dumps(snapshot(RunContext.from_config(cfg))))


if __name__ == "__main__":
    main(sys.argv[1:])
