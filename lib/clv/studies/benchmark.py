"""Benchmark the data stages at growing sizes, against a plain pandas implementation of the same features.

    python -m clv.studies.benchmark benchmark.real=../shared/data/online_retail_2009_2011_combined.csv.gz
    make benchmark BENCHMARK_ARGS="benchmark.sizes=[100k] benchmark.scoring_customers=0"

For each dataset (synthetic BG/NBD data of `benchmark.sizes` lines from clv.synthetic, and the real
file if given) it runs extract and features through the real script (`scripts/run_pipeline.py`, a
fresh process each time, so Spark start is included), then the same features in pandas, checks that
both give the same values, and prints one table: stage, rows in, wall seconds, peak memory (the
process tree: Python and the Spark JVM), rows per second, and the Spark/pandas ratio. With
`benchmark.scoring_customers` it also scores that many customers with a champion trained on the first
dataset. Results go to <benchmark.out>/benchmark.json and benchmark.md. A benchmark, not a test:
nothing here asserts.

Configuration (clv.studies explains the primary config): conf/benchmark.yaml holds the settings under
`benchmark`; the pandas reference takes its windows, cadence and cleaning rules from the composed
pipeline config, so that both sides compute what the config says.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from clv.studies import command_line_overrides, pipeline_overrides
from clv.synthetic import SyntheticSpec, customers_for_lines, write_source
from mlops.config import CONF_DIR, compose_config
from mlops.errors import PipelineError
from mlops.redact import redacted_output

log = logging.getLogger(__name__)

# the checkout whose scripts/run_pipeline.py is measured (the package is installed editable from it)
REPO = CONF_DIR.parent
# a stage that writes nothing (train, evaluate) has neither tables nor rows in its line
STAGE_LINE = re.compile(
    r"stage (\w+) done in ([\d.]+) s: (?:tables .*?, )?(?:rows (\{.*\}), )?Spark jobs (\w+) in (\w+) queries"
)
STAGE_START = re.compile(r"stage (\w+): ")


def parse_size(text: str | int) -> int:
    scale = {"k": 1_000, "m": 1_000_000}
    text = str(text).strip().lower()
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def label(lines: int) -> str:
    return f"{lines // 1_000_000}M" if lines >= 1_000_000 and lines % 1_000_000 == 0 else f"{lines // 1_000}k"


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    name: str
    path: Path
    lines: int | None = None
    generate_seconds: float | None = None


def synthetic(out: Path, lines: int, seed: int, **spec_args) -> Dataset:
    """Generated once per (size, seed) and reused: generation is not what is being measured."""
    name = f"synthetic-{label(lines)}" + ("-" + "-".join(f"{k}{v}" for k, v in spec_args.items()) if spec_args else "")
    folder = out / "data" / f"{name}-seed{seed}"
    done = folder / "_SUCCESS.json"
    if done.exists():
        meta = json.loads(done.read_text())
        return Dataset(name, folder, meta["lines"], meta["generate_seconds"])
    base = SyntheticSpec(n_customers=1, seed=seed, **spec_args)
    spec = base.with_customers(customers_for_lines(base, lines))
    started = time.perf_counter()
    for stale in folder.glob("part-*"):
        stale.unlink()
    written = write_source(spec, folder)
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"lines": written.lines, "customers": spec.n_customers, "generate_seconds": seconds}))
    log.info("generated %s: %d lines, %d customers in %.1f s", name, written.lines, spec.n_customers, seconds)
    return Dataset(name, folder, written.lines, seconds)


def scoring_dataset(out: Path, customers: int, seed: int) -> Dataset:
    """`customers` customers with one line per invoice and no anonymous lines: a million customers
    to score without ten times as many lines to extract first."""
    folder = out / "data" / f"scoring-{label(customers)}-customers-seed{seed}"
    done = folder / "_SUCCESS.json"
    name = f"scoring-{label(customers)}-customers"
    if done.exists():
        meta = json.loads(done.read_text())
        return Dataset(name, folder, meta["lines"], meta["generate_seconds"])
    spec = SyntheticSpec(n_customers=customers, seed=seed, lines_per_invoice=1.0, anonymous_share=0.0)
    for stale in folder.glob("part-*"):
        stale.unlink()
    started = time.perf_counter()
    written = write_source(spec, folder)
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"lines": written.lines, "customers": customers, "generate_seconds": seconds}))
    return Dataset(name, folder, written.lines, seconds)


# --------------------------------------------------------------------------- measuring a run


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the Spark JVM is a grandchild)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in (Path("/proc") / str(current) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


@dataclass
class StageRun:
    stage: str
    seconds: float
    rows: dict
    peak_rss: int = 0
    # the Spark jobs the stage started (mlops.spark_jobs); None where the session cannot count them
    jobs: int | None = None
    # the queries (actions) among them, each several jobs under adaptive execution
    queries: int | None = None


@dataclass
class Run:
    wall_seconds: float
    spark_start_seconds: float | None
    stages: list[StageRun] = field(default_factory=list)


def run_pipeline(overrides: Sequence[str], stages: Sequence[str]) -> Run:
    """One `scripts/run_pipeline.py` process: stage times from its log, memory sampled alongside."""
    command = [
        sys.executable,
        str(REPO / "scripts" / "run_pipeline.py"),
        *overrides,
        f"pipeline.stages=[{','.join(stages)}]",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    current: dict[str, Any] = {"stage": "start", "peaks": {}}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = _tree_rss(process.pid)
            peaks = current["peaks"]
            peaks[current["stage"]] = max(peaks.get(current["stage"], 0), rss)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = Run(wall_seconds=0.0, spark_start_seconds=None)
    tail: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        tail = (tail + [line])[-40:]
        if "Spark " in line and "master" in line and run.spark_start_seconds is None:
            run.spark_start_seconds = time.perf_counter() - started
        if done := STAGE_LINE.search(line):
            rows = eval(done.group(3) or "{}", {"__builtins__": {}})  # the stage's own dict literal of ints
            jobs, queries = (int(group) if group.isdigit() else None for group in done.group(4, 5))
            run.stages.append(StageRun(done.group(1), float(done.group(2)), rows, jobs=jobs, queries=queries))
        elif begun := STAGE_START.search(line):
            current["stage"] = begun.group(1)
    process.wait()
    stop.set()
    sampler.join()
    run.wall_seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{''.join(tail)}")
    for stage in run.stages:
        stage.peak_rss = current["peaks"].get(stage.stage, 0)
    return run


# --------------------------------------------------------------------------- the pandas reference


def pandas_transactions(path: Path, cfg: DictConfig) -> pd.DataFrame:
    """What a user would write: read every CSV, type it, drop non-products and lines without a customer."""
    files = sorted(path.glob("part-*.csv*")) if path.is_dir() else [path]
    columns = {name: column for name, column in cfg.use_case.source.columns.items() if column is not None}
    raw = pd.concat(
        [pd.read_csv(f, dtype=str, keep_default_na=False, usecols=list(columns.values())) for f in files],
        ignore_index=True,
    ).rename(columns={v: k for k, v in columns.items()})
    cleaning = cfg.use_case.cleaning.fn
    customer = raw["customer_id"].str.strip().str.replace(r"\.0+$", "", regex=True)
    stock = raw["stock_code"].str.strip()
    product = ~stock.isin(list(cleaning.non_product_stock_codes))
    for prefix in cleaning.non_product_stock_code_prefixes:
        product &= ~stock.str.startswith(prefix)
    kept = (customer != "") & product
    if cfg.country.source_value is not None:
        kept &= raw["country"].str.strip() == cfg.country.source_value
    lines = pd.DataFrame(
        {
            "customer_id": customer[kept],
            "invoice": raw["invoice"].str.strip()[kept],
            "stock_code": stock[kept],
            "quantity": raw["quantity"][kept].astype("int64"),
            "price": raw["price"][kept].astype("float64"),
            "day": pd.to_datetime(raw["invoice_date"][kept]).dt.normalize(),
        }
    )
    lines["revenue"] = lines["quantity"] * lines["price"]
    lines["is_return"] = lines["invoice"].str.startswith(cleaning.return_invoice_prefix) | (lines["quantity"] < 0)
    return lines


def pandas_features(lines: pd.DataFrame, snapshots: Sequence[dt.date], windows: Sequence[int]) -> pd.DataFrame:
    """The repurchase features (windows: model.features.fn.windows_days), one snapshot at a time, the
    way a notebook would compute them."""
    invoices = lines.groupby(["customer_id", "invoice", "is_return"], as_index=False).agg(
        day=("day", "min"), value=("revenue", "sum"), units=("quantity", "sum")
    )
    purchase_days = invoices.loc[~invoices["is_return"], ["customer_id", "day"]].drop_duplicates()
    first_buys = lines[~lines["is_return"]].groupby(["customer_id", "stock_code"], as_index=False)["day"].min()
    frames = []
    for snapshot in snapshots:
        cut = pd.Timestamp(snapshot)
        seen = invoices[invoices["day"] <= cut]
        seen = seen.assign(days_before=(cut - seen["day"]).dt.days)
        bought = seen[~seen["is_return"]]
        out = bought.groupby("customer_id").agg(
            days_since_last_purchase=("days_before", "min"),
            tenure_days=("days_before", "max"),
            purchase_count=("invoice", "size"),
            revenue_total=("value", "sum"),
            units_total=("units", "sum"),
        )
        returned = -seen[seen["is_return"]].groupby("customer_id")["value"].sum()
        days = purchase_days[purchase_days["day"] <= cut].sort_values(["customer_id", "day"])
        gaps = days.groupby("customer_id")["day"].diff().dt.days.dropna()
        gap_stats = gaps.groupby(days.loc[gaps.index, "customer_id"]).agg(["count", "mean", "std"])
        products = first_buys[first_buys["day"] <= cut].groupby("customer_id").size()
        out["purchase_days"] = gap_stats["count"].reindex(out.index).fillna(0).astype(int) + 1
        out["revenue_mean"] = out["revenue_total"] / out["purchase_count"]
        out["basket_size_mean"] = out["units_total"] / out["purchase_count"]
        out["distinct_products"] = products.reindex(out.index).fillna(0).astype(int)
        returned_value = returned.reindex(out.index).fillna(0.0)
        out["return_ratio"] = np.where(out["revenue_total"] > 0, returned_value / out["revenue_total"], 0.0)
        out["gap_mean_days"] = gap_stats["mean"].reindex(out.index)
        out["gap_std_days"] = gap_stats["std"].reindex(out.index)
        for window in windows:
            recent = bought[bought["days_before"] < window].groupby("customer_id")["value"].agg(["size", "sum"])
            out[f"purchases_{window}d"] = recent["size"].reindex(out.index).fillna(0).astype(int)
            out[f"revenue_{window}d"] = recent["sum"].reindex(out.index).fillna(0.0)
        frames.append(out.drop(columns="units_total").reset_index().assign(snapshot_date=cut))
    return pd.concat(frames, ignore_index=True)


def compare_features(spark_features: pd.DataFrame, reference: pd.DataFrame, rtol: float = 1e-9) -> dict:
    """Same keys, and every shared column equal within rtol (doubles summed in a different order)."""
    keys = ["customer_id", "snapshot_date"]
    left = spark_features.assign(snapshot_date=pd.to_datetime(spark_features["snapshot_date"]))
    merged = left.merge(reference, on=keys, how="outer", suffixes=("", "_ref"), indicator=True)
    only = merged["_merge"].value_counts().to_dict()
    mismatches = {}
    for column in reference.columns:
        if column in keys or column not in left.columns:
            continue
        a = merged[column].to_numpy(dtype=float)
        b = merged[f"{column}_ref"].to_numpy(dtype=float)
        equal = np.isclose(a, b, rtol=rtol, atol=1e-9) | (np.isnan(a) & np.isnan(b))
        if not equal.all():
            mismatches[column] = int((~equal).sum())
    return {
        "rows": len(left),
        "reference_rows": len(reference),
        "left_only": int(only.get("left_only", 0)),
        "right_only": int(only.get("right_only", 0)),
        "mismatched_columns": mismatches,
        "equal": not mismatches and not only.get("left_only") and not only.get("right_only"),
    }


# --------------------------------------------------------------------------- one dataset


def _world(settings: DictConfig, overrides: Sequence[str], root: Path) -> list[str]:
    """The benchmark's pipeline: every country at once, the repurchase features (what the pandas
    reference computes), from benchmark.snapshot_start."""
    return [
        *overrides,
        *settings.population,
        "model=repurchase",
        f"env.storage_root={root}",
        "use_case/source=csv",
        f"use_case.snapshots.start_date={settings.snapshot_start}",
    ]


def bench_dataset(dataset: Dataset, settings: DictConfig, overrides: Sequence[str] = ()) -> dict:
    root = Path(settings.out).resolve() / "runs" / dataset.name
    if root.exists():
        shutil.rmtree(root)
    world = [*_world(settings, overrides, root), f"use_case.source.path={dataset.path}"]
    log.info("%s: extract + features (Spark)", dataset.name)
    run = run_pipeline(world, ["extract", "features"])
    by_stage = {stage.stage: stage for stage in run.stages}
    result = {
        "dataset": dataset.name,
        "source_lines": by_stage["extract"].rows.get("source"),
        "wall_seconds": run.wall_seconds,
        "spark_start_seconds": run.spark_start_seconds,
        "stages": [asdict(stage) for stage in run.stages],
    }
    if not settings.pandas:
        return result

    cfg = compose_config(world)
    log.info("%s: the same features in pandas", dataset.name)
    started = time.perf_counter()
    lines = pandas_transactions(dataset.path, cfg)
    loaded = time.perf_counter()
    table = pd.read_parquet(_delta_files(cfg, "transactions"), columns=["invoice_date"])
    last = table["invoice_date"].max().date()
    observed_until = last - dt.timedelta(days=1)
    from mlops.calendar import monthly_dates

    snapshots = monthly_dates(
        dt.date.fromisoformat(str(settings.snapshot_start)), observed_until, int(cfg.use_case.snapshots.cadence_months)
    )
    reference = pandas_features(lines, snapshots, list(cfg.model.features.fn.windows_days))
    finished = time.perf_counter()
    spark_features = pd.read_parquet(_delta_files(cfg, "features"))
    result["pandas"] = {
        "load_seconds": loaded - started,
        "features_seconds": finished - loaded,
        "snapshots": len(snapshots),
        "transactions": len(lines),
        "check": compare_features(spark_features, reference),
    }
    return result


def _delta_files(cfg: DictConfig, key: str) -> list[str]:
    """The files of a use-case table's current version in the run's local world."""
    from deltalake import DeltaTable

    from mlops.tables import DeltaPathTableStore, TableName

    name = TableName.of(cfg.env.catalog, cfg.env.schema, cfg.use_case.tables[key])
    store = DeltaPathTableStore(None, cfg.env.tables.root)  # type: ignore[arg-type]  # only asked for a path
    return DeltaTable(str(store.path(name))).file_uris()


def bench_scoring(train_on: Dataset, score: Dataset, settings: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """A champion from the small dataset, then batch_inference over every customer of the big one."""
    root = Path(settings.out).resolve() / "runs" / f"scoring-{score.name}"
    if root.exists():
        shutil.rmtree(root)
    base = [*_world(settings, overrides, root), "evaluation.run_mode=disabled"]
    log.info("scoring: a champion from %s", train_on.name)
    run_pipeline(
        [*base, f"use_case.source.path={train_on.path}"], ["extract", "features", "split", "train", "evaluate"]
    )
    log.info("scoring: batch_inference over %s", score.name)
    # the customers to score replace the training data's transactions on purpose: fewer is no fault here
    run = run_pipeline(
        [*base, f"use_case.source.path={score.path}", "use_case.guards.allow_shrink=true"],
        ["extract", "batch_inference"],
    )
    return {"dataset": score.name, "wall_seconds": run.wall_seconds, "stages": [asdict(stage) for stage in run.stages]}


def bench_sample(settings: DictConfig, overrides: Sequence[str] = ()) -> dict | None:
    """The bundled sample through benchmark.sample_stages in one fresh process: what a newcomer's
    `make train` pays per stage, in seconds and in Spark jobs (the per-action tax)."""
    if not settings.sample_stages:
        return None
    root = Path(settings.out).resolve() / "runs" / "sample"
    if root.exists():
        shutil.rmtree(root)
    chosen = list(settings.sample)
    log.info("the bundled sample (%s): %s", " ".join(chosen), ", ".join(settings.sample_stages))
    run = run_pipeline([*overrides, *chosen, f"env.storage_root={root}"], list(settings.sample_stages))
    return {
        "overrides": " ".join(f"`{o}`" for o in chosen),
        "wall_seconds": run.wall_seconds,
        "stages": [asdict(stage) for stage in run.stages],
    }


# --------------------------------------------------------------------------- report


def table_rows(results: list[dict], scoring: dict | None) -> list[dict]:
    rows = []
    for result in results:
        stages = {stage["stage"]: stage for stage in result["stages"]}
        rows_in = {"extract": result["source_lines"], "features": stages["extract"]["rows"].get("transactions")}
        for name in ("extract", "features"):
            stage = stages[name]
            rows.append(
                {
                    "dataset": result["dataset"],
                    "stage": name,
                    "rows_in": rows_in[name],
                    "seconds": stage["seconds"],
                    "peak_gib": stage["peak_rss"] / 2**30,
                    "rows_per_second": rows_in[name] / stage["seconds"],
                    "jobs": stage.get("jobs"),
                    "queries": stage.get("queries"),
                }
            )
        reference = result.get("pandas")
        rows.append(
            {
                "dataset": result["dataset"],
                "stage": "extract+features, whole process",
                "rows_in": result["source_lines"],
                "seconds": result["wall_seconds"],
                "peak_gib": max(s["peak_rss"] for s in result["stages"]) / 2**30,
                "rows_per_second": result["source_lines"] / result["wall_seconds"],
                "pandas_seconds": reference and reference["load_seconds"] + reference["features_seconds"],
                "pandas_features_seconds": reference and reference["features_seconds"],
                "same_values": reference and reference["check"]["equal"],
            }
        )
    if scoring:
        stage = next(s for s in scoring["stages"] if s["stage"] == "batch_inference")
        customers = stage["rows"].get("predictions")
        rows.append(
            {
                "dataset": scoring["dataset"],
                "stage": "batch_inference (customers scored)",
                "rows_in": customers,
                "seconds": stage["seconds"],
                "peak_gib": stage["peak_rss"] / 2**30,
                "rows_per_second": customers / stage["seconds"] if customers else None,
                "jobs": stage.get("jobs"),
                "queries": stage.get("queries"),
            }
        )
    return rows


def markdown(rows: list[dict], sample: dict | None = None) -> str:
    head = (
        "| dataset | stage | rows in | wall s | Spark jobs | queries | peak GiB | rows/s | pandas s (load + features) "
        "| Spark / pandas | same values |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for row in rows:
        pandas_s = row.get("pandas_seconds")
        ratio = f"{row['seconds'] / pandas_s:.1f}" if pandas_s else ""
        jobs = row.get("jobs")
        lines.append(
            f"| {row['dataset']} | {row['stage']} | {row['rows_in']:,} | {row['seconds']:.1f} | "
            f"{_figure(jobs)} | {_figure(row.get('queries'))} | {row['peak_gib']:.2f} | {row['rows_per_second'] or 0:,.0f} | "
            f"{f'{pandas_s:.1f}' if pandas_s else ''} | {ratio} | "
            f"{'' if row.get('same_values') is None else ('yes' if row['same_values'] else 'NO')} |"
        )
    text = head + "\n".join(lines) + "\n"
    if sample:
        text += (
            f"\nThe bundled sample, {sample['overrides']}, every stage in one process "
            f"({sample['wall_seconds']:.1f} s wall, Spark start included):\n\n"
            "| stage | wall s | Spark jobs | queries |\n|---|---:|---:|---:|\n"
            + "".join(
                f"| {stage['stage']} | {stage['seconds']:.1f} | {_figure(stage['jobs'])} | "
                f"{_figure(stage.get('queries'))} |\n"
                for stage in sample["stages"]
            )
        )
    return text


def _figure(count: int | None) -> str:
    return "" if count is None else str(count)


def machine() -> dict:
    memory = next(
        (
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        None,
    )
    import pyspark

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "platform": platform.platform(),
    }


def benchmark(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Every dataset, then the scoring run; writes <out>/benchmark.json and benchmark.md and returns the report.
    `overrides` go to every pipeline run."""
    settings = cfg.benchmark
    out = Path(settings.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    datasets = [synthetic(out, parse_size(size), int(settings.seed)) for size in settings.sizes]
    if settings.real:
        real = Path(settings.real).resolve()
        datasets.append(Dataset(f"real:{real.name}", real))
    results = [bench_dataset(dataset, settings, overrides) for dataset in datasets]
    scoring = None
    customers = parse_size(settings.scoring_customers)
    if customers and datasets:
        scoring = bench_scoring(datasets[0], scoring_dataset(out, customers, int(settings.seed)), settings, overrides)

    sample = bench_sample(settings, overrides)

    rows = table_rows(results, scoring)
    report = {
        "machine": machine(),
        "datasets": [asdict(d) | {"path": str(d.path)} for d in datasets],
        "results": results,
        "scoring": scoring,
        "sample": sample,
        "table": rows,
    }
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "benchmark.md").write_text(markdown(rows, sample))
    return report


@redacted_output()
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="benchmark")
def main(cfg: DictConfig) -> None:
    try:
        report = benchmark(cfg, pipeline_overrides(command_line_overrides(), "benchmark"))
    except PipelineError as error:
        log.error("benchmark failed: %s", error.message)
        sys.exit(error.exit_code)
    # the table and the checks, for the person who started it
    out = Path(cfg.benchmark.out).resolve()
    sys.stdout.write(markdown(report["table"], report["sample"]) + "\n")
    for result in report["results"]:
        if "pandas" in result:
            check = result["pandas"]["check"]
            sys.stdout.write(
                f"{result['dataset']}: {result['pandas']['snapshots']} snapshots, Spark and pandas "
                f"features {'agree' if check['equal'] else 'DIFFER: ' + json.dumps(check)} "
                f"({check['rows']:,} rows)\n"
            )
    sys.stdout.write(f"written: {out / 'benchmark.json'}, {out / 'benchmark.md'}\n")


if __name__ == "__main__":
    main()
