"""Data contracts: Great Expectations suites from config, run on Spark before any write."""
from __future__ import annotations

import logging
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
        raise ConfigError(f"unknown Great Expectations expectation {name!r}", where="use_case.quality",
                          fix="use a GX 1.x core expectation name, e.g. expect_column_values_to_not_be_null") from None


def parse_expectation(entry: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """One config entry `{expect_...: {args}, hint: ...}` -> (name, args, hint)."""
    names = [key for key in entry if key.startswith("expect_")]
    unknown = set(entry) - set(names) - {"hint"}
    if len(names) != 1 or unknown:
        raise ConfigError(f"malformed expectation entry {entry!r}", where="use_case.quality",
                          fix="each entry is one `expect_<name>: {arguments}` plus an optional `hint`")
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
            raise ConfigError(f"bad arguments for {exp_name}: {exc}", where=f"use_case.quality ({name})",
                              fix="check the expectation's arguments in the GX docs") from None
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
    details = {key: value for key, value in result.result.items()
               if key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent",
                          "partial_unexpected_list", "details")}
    kwargs = {key: value for key, value in config.kwargs.items() if key not in ("batch_id", "result_format")}
    hint = (config.meta or {}).get("hint", "")
    if result.exception_info and result.exception_info.get("raised_exception"):
        details["error"] = str(result.exception_info.get("exception_message", ""))[:300]
    return {"expectation": config.type, "kwargs": kwargs, "result": details, "hint": hint}


def validate(df: "DataFrame", entries: list[dict[str, Any]], *, table: str, persist: bool = True) -> None:
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
