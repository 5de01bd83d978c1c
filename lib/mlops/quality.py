"""Data contracts: Great Expectations suites from config, run on Spark before any write."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError, DataQualityError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

# A failure names a few offending values, never whole rows of customer data.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
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
    details = {
        key: value
        for key, value in result.result.items()
        if key
        in (
            "observed_value",
            "element_count",
            "unexpected_count",
            "unexpected_percent",
            "partial_unexpected_list",
            "details",
        )
    }
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


def validate(df: DataFrame, entries: list[dict[str, Any]], *, table: str, persist: bool = True) -> None:
    """Raise DataQualityError naming every broken expectation; return quietly when all hold."""
    if not entries:
        log.debug("no data contract configured for %s", table)
        return
    suite = build_suite(entries, name=table)
    batch = _batch_definition(persist).get_batch(batch_parameters={"dataframe": df})
    if batch.validate(suite, result_format=_CHECK_FORMAT).success:
        log.info("data contract of %s holds (%d expectations)", table, len(entries))
        return
    outcome = batch.validate(suite, result_format=_RESULT_FORMAT)
    failures = [_describe(result) for result in outcome.results if not result.success]
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


def _short(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in mapping.items())[:400]
