"""Data contracts: Great Expectations suites from config, run on Spark before any write."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError, DataQualityError

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

# A failure names a few offending values, never whole rows of customer data.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
# What a failure message and a report show of an expectation's result: aggregates and the few values
# GX samples. GX's other keys (unexpected_list, index lists, unexpected_rows, value counts of a
# longer list) would carry more customer data.
_SHOWN_RESULT_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "partial_unexpected_list",
    "details",
)
# What a report keeps of an expectation on a column of customer ids: counts, and the sampled values
# as pseudonyms (_pseudonym); an observed value or GX's details could be an id itself.
_PRIVATE_RESULT_KEYS = ("element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
# Salted per process: a pseudonym is the same within one run (two failures name the same customer
# alike) and cannot be looked up from a list of ids, here or in another run's report.
_SALT = secrets.token_bytes(16)
# The first pass asks only pass/fail: GX then computes one aggregate per column instead of also
# collecting unexpected values for every expectation (several Spark jobs each, ~3x the time on a
# passing table). A suite that fails is run again for the details of its failures.
_CHECK_FORMAT = {"result_format": "BOOLEAN_ONLY"}


def _expectation_class(name: str):
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in name.split("_"))
    try:
        return getattr(gx.expectations, class_name)
    except AttributeError:
        raise ConfigError(
            f"unknown Great Expectations expectation {name!r}",
            where="use_case.quality",
            fix="use a GX 1.x core expectation name, e.g. expect_column_values_to_not_be_null",
        ) from None


def parse_expectation(entry: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """One config entry `{expect_...: {args}, hint: ...}` -> (name, args, hint)."""
    names = [key for key in entry if key.startswith("expect_")]
    unknown = set(entry) - set(names) - {"hint"}
    if len(names) != 1 or unknown:
        raise ConfigError(
            f"malformed expectation entry {entry!r}",
            where="use_case.quality",
            fix="each entry is one `expect_<name>: {arguments}` plus an optional `hint`",
        )
    name = names[0]
    return name, dict(entry[name] or {}), str(entry.get("hint") or "")


# the arguments that name columns; a null among them is a column the config maps to nothing
_COLUMN_ARGUMENTS = ("column", "column_A", "column_B")
_COLUMN_LIST_ARGUMENTS = ("column_set", "column_list")


def applicable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The expectations that apply to a source with optional columns: an expectation about a column
    the config maps to null (a source without invoices, say) is left out, and nulls are left out
    of column lists, so one contract written against the column mapping serves every source shape."""
    kept = []
    for entry in entries:
        name, args, _ = parse_expectation(entry)
        if any(key in args and args[key] is None for key in _COLUMN_ARGUMENTS):
            log.debug("%s does not apply: its column is not mapped", name)
            continue
        lists = {key: [c for c in args[key] if c is not None] for key in _COLUMN_LIST_ARGUMENTS if args.get(key)}
        kept.append({**entry, name: {**args, **lists}} if lists else entry)
    return kept


def build_suite(entries: list[dict[str, Any]], name: str):
    import great_expectations as gx

    _batch_definition()  # GX wants a live context before a suite can be built
    expectations = []
    for entry in entries:
        exp_name, args, hint = parse_expectation(entry)
        try:
            expectation = _expectation_class(exp_name)(**args, meta={"hint": hint} if hint else None)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"bad arguments for {exp_name}: {exc}",
                where=f"use_case.quality ({name})",
                fix="check the expectation's arguments in the GX docs",
            ) from None
        expectations.append(expectation)
    return gx.ExpectationSuite(name=name, expectations=expectations)


@lru_cache(maxsize=2)
def _batch_definition(persist: bool = True):
    """One ephemeral GX context per process: building it costs seconds, validating it does not.

    With `persist` GX caches the DataFrame it checks, so the write that follows reads the cache
    instead of recomputing; serverless compute refuses caching, hence the switch.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX pins this module's logger at INFO on import, which would chatter on every run
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_spark(name="pipeline", persist=persist).add_dataframe_asset(name="table")
    return asset.add_batch_definition_whole_dataframe("whole_table")


def _describe(result) -> dict[str, Any]:
    config = result.expectation_config
    details = {key: value for key, value in result.result.items() if key in _SHOWN_RESULT_KEYS}
    kwargs = {key: value for key, value in config.kwargs.items() if key not in ("batch_id", "result_format")}
    hint = (config.meta or {}).get("hint", "")
    errors = _raised(result)
    if errors:
        details["error"] = errors[0][:300]
    return {"expectation": config.type, "kwargs": kwargs, "result": details, "hint": hint, "errors": errors}


def _raised(result) -> list[str]:
    """The exception messages of an expectation that could not be computed: GX keeps one entry,
    or one per metric it tried, and marks each that raised."""
    info = result.exception_info or {}
    entries = [info] if "raised_exception" in info else [entry for entry in info.values() if isinstance(entry, dict)]
    return [str(entry.get("exception_message") or "") for entry in entries if entry.get("raised_exception")]


_ERROR_CLASS = re.compile(r"\[([A-Z][A-Z0-9_]+(?:\.[A-Z0-9_]+)?)\]\s*([^:\n]*)")
# Spark error class -> the likely cause in the input, as a reader would fix it
_LIKELY_CAUSES = (
    (
        ("MALFORMED", "CSV"),
        "lines that do not split into the header's columns: a delimiter other than "
        "use_case.source.delimiter, a quoted field with a line break inside, or a file cut off "
        "mid-line",
    ),
    (("NUMERIC_VALUE_OUT_OF_RANGE", "OVERFLOW", "DECIMAL"), "a number too large for its column type"),
    (("UNRESOLVED_COLUMN", "FIELD_NOT_FOUND"), "a column the contract names is not in the table"),
    (
        ("INVALID_ATTRIBUTE_NAME_SYNTAX",),
        "a column name Spark cannot parse (it holds a backtick or a dot); rename the column in the source",
    ),
    (("CAST_INVALID_INPUT", "DATETIME", "PARSE"), "a value that does not parse as its type"),
    (("FAILED_READ_FILE", "FILE_NOT_FOUND", "PATH_NOT_FOUND"), "a source file that cannot be read completely"),
)


def spark_failure(message: str) -> tuple[str, str]:
    """(Spark's error, shortened to its innermost error class and title; the likely cause).

    The innermost class is the specific one (MALFORMED_CSV_RECORD under FAILED_READ_FILE). Only
    the title is kept: Spark's message goes on to quote the offending record, customer data.
    """
    found = _ERROR_CLASS.findall(message)
    if found:
        error_class, title = found[-1]
        first = f"[{error_class}] {title.strip()}".strip()
    else:
        error_class, first = "", next((line.strip() for line in message.splitlines() if line.strip()), "")[:200]
    classes = " ".join(name for name, _ in found).upper() or message[:500].upper()
    cause = next(
        (text for keys, text in _LIKELY_CAUSES if any(key in classes for key in keys)),
        "Spark could not compute the checks on this input",
    )
    return first, cause


def validate(
    df: DataFrame,
    entries: list[dict[str, Any]],
    *,
    table: str,
    persist: bool = True,
    results: list[ValidationRecord] | None = None,
    measures: dict[str, Column] | None = None,
    private: Collection[str] = (),
) -> dict[str, Any]:
    """Raise DataQualityError naming every broken expectation; when all hold, return `measures`
    (name -> aggregate over the table) computed, in the same pass where one_pass decides.

    Values of the `private` columns (customer ids) appear in the message and the record only as
    salted pseudonyms (`id#…`): errors and reports carry no customer data.

    `results`, when given, receives a ValidationRecord of the check, pass or fail (before the
    error is raised), for the stage's data-quality report (`publish`). A pass keeps the pass/fail
    result as it is, so the report costs no Spark job; a failure keeps its detailed result."""
    measures = measures or {}
    decided = one_pass(df, build_suite(entries, name=table), persist=persist, measures=measures) if entries else None
    if not entries:
        log.debug("no data contract configured for %s", table)
    elif decided is None:  # a metric one_pass does not compute, or Spark failed: GX's own engine decides
        _gx_validate(df, entries, table=table, persist=persist, results=results, private=private)
    else:
        check, measured = decided
        if not check.success:
            _gx_validate(df, entries, table=table, persist=persist, results=results, private=private)
        else:
            log.info("data contract of %s holds (%d expectations, one pass)", table, len(entries))
            if results is not None:
                results.append(_record(table, check))
            return measured
    if not measures:
        return {}
    from mlops.frames import first_row

    return first_row(df.agg(*(value.alias(name) for name, value in measures.items()))).asDict()


def _gx_validate(
    df: DataFrame,
    entries: list[dict[str, Any]],
    *,
    table: str,
    persist: bool,
    results: list[ValidationRecord] | None,
    private: Collection[str] = (),
) -> None:
    """GX's own engine on the table: the pass/fail check, then on a failure the detailed run that
    names the failing expectations and a few values (the message `validate` raises)."""
    suite = build_suite(entries, name=table)
    batch = _batch_definition(persist).get_batch(batch_parameters={"dataframe": df})
    check = batch.validate(suite, result_format=_CHECK_FORMAT)
    if check.success:
        log.info("data contract of %s holds (%d expectations)", table, len(entries))
        if results is not None:
            results.append(_record(table, check))
        return
    outcome = batch.validate(suite, result_format=_RESULT_FORMAT)
    _mask_private(outcome, private)
    failures = [_describe(result) for result in outcome.results if not result.success]
    if results is not None:
        # after _describe: the message quotes GX's raw errors, the record keeps them shortened
        results.append(_record(table, outcome))
    # GX raises for a column the table lacks; that is a contract failure (the columns check says
    # which and how to map it), not Spark failing on the rows
    raised = [
        failure
        for failure in failures
        if failure["errors"] and not any("does not exist" in error for error in failure["errors"])
    ]
    if raised:
        # the other expectations' verdicts mean nothing when Spark could not read the rows
        error, cause = spark_failure(raised[0]["errors"][0])
        column = raised[0]["kwargs"].get("column")
        raise DataQualityError(
            f"Spark failed while checking {table} ({len(raised)} of {len(entries)} expectations could not be "
            f"computed): {error}" + (f" (first in column {column!r})" if column else "") + f"; likely cause: {cause}",
            where=table,
            fix="correct the input (or its use_case.source settings: delimiter, encoding, "
            "timestamp_format); nothing was written",
            failures=failures,
        )
    lines = []
    for failure in failures:
        line = f"{failure['expectation']}({_short(failure['kwargs'])}) -> {_short(failure['result'])}"
        if failure["hint"]:
            line += f" [{failure['hint']}]"
        lines.append(line)
    raise DataQualityError(
        f"{len(failures)} of {len(entries)} expectations failed: " + "; ".join(lines),
        where=table,
        fix="correct the input data (or, if the contract is wrong, use_case.quality); nothing was written",
        failures=failures,
    )


def _pseudonym(value: object) -> str:
    return "id#" + hashlib.sha256(_SALT + str(value).encode()).hexdigest()[:10]


def _mask_private(outcome: ExpectationSuiteValidationResult, private: Collection[str]) -> None:
    """Replace, in place, the sampled values of expectations on `private` columns by pseudonyms
    and drop whatever else of their result could hold a value (before the message or record sees it)."""
    private = set(private)
    for result in outcome.results:
        kwargs = result.expectation_config.kwargs if result.expectation_config else {}
        columns = private & {
            kwargs.get("column"),
            kwargs.get("column_A"),
            kwargs.get("column_B"),
            *(kwargs.get("column_list") or ()),
        }
        if not columns:
            continue
        kept = {key: value for key, value in result.result.items() if key in _PRIVATE_RESULT_KEYS}
        if kept.get("partial_unexpected_list") is not None:
            kept["partial_unexpected_list"] = [
                {key: _pseudonym(v) if key in columns and v is not None else v for key, v in item.items()}
                if isinstance(item, dict)
                else (None if item is None else _pseudonym(item))
                for item in kept["partial_unexpected_list"]
            ]
        result.result = kept


# The metrics one_pass computes, by GX metric name: each a Spark aggregate over the whole table that
# mirrors the condition of GX's own Spark implementation (tests/test_quality.py compares the two).
_COLUMN_DOMAIN = {"batch_id", "table", "column", "row_condition", "condition_parser"}
_COMPOUND_DOMAIN = {"batch_id", "table", "column_list", "row_condition", "condition_parser", "ignore_row_if"}


def _count_where(condition: Any):
    from pyspark.sql import functions as F

    return F.sum(F.when(condition, 1).otherwise(0))


def _unexpected(df: DataFrame, name: str, column: str, value: dict[str, Any]):
    """A column map metric's unexpected-row condition, null rows excluded as GX excludes them;
    None for a metric or argument this module does not mirror."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    c = F.col(column)
    if name == "column_values.nonnull":
        return c.isNull()
    if name in ("column_values.match_regex", "column_values.not_match_regex") and isinstance(value.get("regex"), str):
        matches = c.rlike(value["regex"])
        return c.isNotNull() & (matches if name == "column_values.not_match_regex" else ~matches)
    if name in ("column_values.in_set", "column_values.not_in_set") and isinstance(value.get("value_set"), list):
        member = c.isin(value["value_set"])
        return c.isNotNull() & (member if name == "column_values.not_in_set" else ~member)
    if name == "column_values.between":
        low, high = value.get("min_value"), value.get("max_value")
        numbers = all(bound is None or isinstance(bound, int | float) for bound in (low, high))
        # GX rejects bounds that cannot be compared with the column, and a low above the high: its
        # own engine then says how; a string column against numbers is left to it likewise
        if not numbers or (low is None and high is None) or (low is not None and high is not None and low > high):
            return None
        if not isinstance(df.schema[column].dataType, NumericType):
            return None
        inside = F.lit(True)
        if low is not None:
            inside = inside & ((c > F.lit(low)) if value.get("strict_min") else (c >= F.lit(low)))
        if high is not None:
            inside = inside & ((c < F.lit(high)) if value.get("strict_max") else (c <= F.lit(high)))
        return c.isNotNull() & ~inside
    return None


def _missing(columns: list[str], ignore_row_if: str):
    """GX's ignore_row_if for a column list: the rows a compound check leaves out."""
    from functools import reduce

    from pyspark.sql import functions as F

    nulls = [F.col(column).isNull() for column in columns]
    if ignore_row_if == "all_values_are_missing":
        return reduce(lambda a, b: a & b, nulls)
    if ignore_row_if == "any_value_is_missing":
        return reduce(lambda a, b: a | b, nulls)
    return F.lit(False) if ignore_row_if == "never" else None


def one_pass(
    df: DataFrame, suite: Any, *, persist: bool = True, measures: dict[str, Column] | None = None
) -> tuple[ExpectationSuiteValidationResult, dict[str, Any]] | None:
    """The suite's pass/fail in one Spark job: every metric its expectations need is computed by one
    aggregation over the table, and GX's own expectations judge those metrics (their `_validate`,
    as GX's engine would call it). GX's engine resolves a suite level by level and domain by domain,
    one job each (10 for the source contract); on serverless each is a round trip.

    None where this cannot decide faithfully: a metric, domain (row_condition) or argument it does
    not mirror, or Spark failing on the rows. The caller then asks GX's engine, which also explains
    every failure; one_pass never has the last word on a failure (see `validate`). `measures`, the
    stage's own aggregates over the table, ride along in the same aggregation.
    """
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.validator.validation_statistics import calc_validation_statistics
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    runtime = {"result_format": _CHECK_FORMAT}
    expectations = [config.to_domain_obj() for config in suite.expectation_configurations]
    aggregates: dict[str, Any] = {}
    known: dict[str, Any] = {}
    windows: dict[tuple[str, ...], str] = {}
    try:
        for expectation in expectations:
            needed = expectation.get_validation_dependencies(execution_engine=None, runtime_configuration=runtime)
            for metric in needed.get_metric_configurations():
                domain, value = dict(metric.metric_domain_kwargs), dict(metric.metric_value_kwargs or {})
                if domain.get("row_condition"):
                    return None
                if metric.id in aggregates or metric.id in known:
                    continue
                name = metric.metric_name
                if name == "table.columns" and set(domain) <= _COLUMN_DOMAIN:
                    known[metric.id] = list(df.columns)
                elif name == "table.row_count" and set(domain) <= _COLUMN_DOMAIN:
                    aggregates[metric.id] = F.count(F.lit(1))
                elif name.endswith(".unexpected_count") and name.startswith("column_values."):
                    column = domain.get("column")
                    if not isinstance(column, str) or not set(domain) <= _COLUMN_DOMAIN:
                        return None
                    condition = _unexpected(df, name.removesuffix(".unexpected_count"), column, value)
                    if condition is None:
                        return None
                    aggregates[metric.id] = _count_where(condition)
                elif name.startswith("compound_columns.unique.") and set(domain) <= _COMPOUND_DOMAIN:
                    columns = list(domain["column_list"])
                    missing = _missing(columns, domain.get("ignore_row_if", "all_values_are_missing"))
                    if missing is None:
                        return None
                    if name.endswith(".filtered_row_count"):
                        aggregates[metric.id] = _count_where(~missing)
                    elif name.endswith(".unexpected_count"):
                        # rows sharing their key with another; the left-out rows group only with each other
                        alias = windows.setdefault(tuple(columns), f"__rows_with_key_{len(windows)}")
                        aggregates[metric.id] = _count_where(~missing & (F.col(alias) > 1))
                    else:
                        return None
                else:
                    return None
        table = df.persist() if persist else df
        for key_columns, alias in windows.items():
            table = table.withColumn(alias, F.count(F.lit(1)).over(Window.partitionBy(F.struct(*key_columns))))
        ids = list(aggregates)
        row = table.agg(
            *[aggregates[key].alias(f"m{i}") for i, key in enumerate(ids)],
            *[value.alias(f"s{i}") for i, value in enumerate((measures or {}).values())],
        ).collect()[0]
    except Exception as exc:  # Spark failing on the rows (or an unknown column): GX's engine says how
        log.debug("one-pass check not possible (%s); GX's engine validates", str(exc).splitlines()[0][:200])
        return None
    metrics = {**known, **{key: row[f"m{i}"] for i, key in enumerate(ids)}}
    results = [
        expectation.metrics_validate(metrics=metrics, runtime_configuration=dict(runtime), execution_engine=None)
        for expectation in expectations
    ]
    statistics = calc_validation_statistics(results)
    measured = {name: row[f"s{i}"] for i, name in enumerate(measures or {})}
    return ExpectationSuiteValidationResult(
        results=results,
        success=statistics.success,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": statistics.evaluated_expectations,
            "successful_expectations": statistics.successful_expectations,
            "unsuccessful_expectations": statistics.unsuccessful_expectations,
            "success_percent": statistics.success_percent,
        },
        meta={"great_expectations_version": _gx_version()},
    ), measured


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great_expectations")


def _short(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in mapping.items())[:400]


@dataclass(frozen=True)
class ValidationRecord:
    """One contract check as the data-quality report shows it (see `publish`).

    `result` is GX's own result object, so Data Docs can render it, trimmed to what the error
    message shows: per expectation the aggregates and at most partial_unexpected_count sampled
    values, and Spark's error shortened to its class and title (its full text quotes records).
    """

    table: str
    success: bool
    checked_at: dt.datetime
    result: ExpectationSuiteValidationResult


def _record(table: str, outcome: ExpectationSuiteValidationResult) -> ValidationRecord:
    """Trim a GX result (in place: validate does not use it after this) into a ValidationRecord."""
    from great_expectations.core.run_identifier import RunIdentifier

    checked_at = dt.datetime.now(dt.UTC)
    for result in outcome.results:
        result.result = {key: value for key, value in result.result.items() if key in _SHOWN_RESULT_KEYS}
        result.exception_info = _shortened(result.exception_info or {})
    # the batch markers and spec name GX's internal asset, not the table; Data Docs shows the run
    outcome.meta = {
        "great_expectations_version": outcome.meta.get("great_expectations_version"),
        # a run named by its time: Data Docs then names it once, and a table's name may hold a slash
        "run_id": RunIdentifier(run_name=checked_at.strftime("%Y%m%dT%H%M%S.%fZ"), run_time=checked_at),
    }
    return ValidationRecord(table=table, success=bool(outcome.success), checked_at=checked_at, result=outcome)


def _shortened(info: dict[str, Any]) -> dict[str, Any]:
    """GX's exception info (one entry, or one per metric) without tracebacks, messages shortened.

    A traceback holds Spark's full message, which quotes the record it failed on; Data Docs wants a
    string in its place."""
    if "raised_exception" not in info:
        return {key: _shortened(entry) for key, entry in info.items() if isinstance(entry, dict)}
    message = info.get("exception_message")
    return {
        "raised_exception": bool(info["raised_exception"]),
        "exception_traceback": "",
        "exception_message": spark_failure(str(message))[0] if message else None,
    }


def _file_name(table: str) -> str:
    """A table's name as a file name: a source's describe() holds spaces and slashes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", table).strip("_") or "table"


def publish(results: list[ValidationRecord], folder: Path) -> Path:
    """Write each validation as JSON and as Great Expectations Data Docs; return the site's index.html.

    `<folder>/validations/<table>.json` is for reading and diffing: per expectation its arguments,
    verdict, observed values and hint. `<folder>/data_docs/` is GX's own HTML site of the same
    results. Both are made from the kept results on a throwaway GX context: no Spark job, no network
    (the pages load GX's styles from CDNs when opened). A table checked twice gets a numbered name.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    json_folder, site_folder = folder / "validations", folder / "data_docs"
    json_folder.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    # the ephemeral context's own site points at a temporary directory
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]  # SiteBuilder takes it; GX's type omits it
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_folder)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    used: dict[str, int] = {}
    for record in results:
        name = _file_name(record.table)
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}-{used[name]}"
        (json_folder / f"{name}.json").write_text(json.dumps(_readable(record), indent=2, default=str))
        # GX files pages by suite name: the file name, as a table's name may hold a slash
        validation = copy.copy(record.result)
        validation.suite_name = name
        # the suite's page, which the index links to, rebuilt from the expectations the result carries
        configs = [result.expectation_config for result in validation.results if result.expectation_config]
        context.suites.add(gx.ExpectationSuite(name=name, expectations=[config.to_domain_obj() for config in configs]))
        key = ValidationResultIdentifier(
            ExpectationSuiteIdentifier(name=name), validation.meta["run_id"], "whole_table"
        )
        context.validation_results_store.set(key, validation)
    context.build_data_docs(site_names=["local_site"])
    _drop_unlinked_assets(site_folder)
    index = site_folder / "index.html"
    log.info("data-quality report of %d validation(s): %s and %s", len(results), json_folder, index)
    return index


def _drop_unlinked_assets(site: Path) -> None:
    """GX copies its whole static folder into every site (4 MB, mostly GIFs of its how-to guides)
    while the pages link a favicon and load the rest from CDNs: keep only what a page links, as
    the site is logged to MLflow after every stage."""
    linked = {
        (page.parent / target).resolve()
        for page in site.rglob("*.html")
        for target in re.findall(r'(?:href|src)="([^":]*static/[^"]*)"', page.read_text())
    }
    for path in sorted((site / "static").rglob("*"), reverse=True):  # files before their folders
        if path.is_file() and path.resolve() not in linked:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _readable(record: ValidationRecord) -> dict[str, Any]:
    """A validation as a person reads it; observed values exist for failures only (a pass is not re-run)."""
    expectations = []
    for result in record.result.results:
        described = _describe(result)
        observed = {key: value for key, value in described["result"].items() if key != "error"}
        expectations.append(
            {
                "expectation": described["expectation"],
                "success": bool(result.success),
                "kwargs": described["kwargs"],
                "observed": observed,
                "hint": described["hint"],
                **({"errors": described["errors"]} if described["errors"] else {}),
            }
        )
    return {
        "table": record.table,
        "success": record.success,
        "checked_at": record.checked_at.isoformat(),
        "statistics": record.result.statistics,
        "expectations": expectations,
    }
