"""Progress for a person at a terminal, silence for CI and jobs, whose logs are read afterwards."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# set by Azure DevOps (TF_BUILD), most CI services (CI) and Databricks job clusters
_NON_INTERACTIVE = ("CI", "TF_BUILD", "DATABRICKS_RUNTIME_VERSION")


def interactive() -> bool:
    """Whether a person is watching: stderr is a terminal and this is neither CI nor a job."""
    if any(os.environ.get(name) for name in _NON_INTERACTIVE):
        return False
    return sys.stderr.isatty()


def steps(items: Iterable[T], total: int, what: str, label: Callable[[T], str], logger: logging.Logger) -> Iterator[T]:
    """Yield items, logging `what i/total: label` before each: at INFO when interactive, else DEBUG."""
    level = logging.INFO if interactive() else logging.DEBUG
    for index, item in enumerate(items, 1):
        logger.log(level, "%s %d/%d: %s", what, index, total, label(item))
        yield item
