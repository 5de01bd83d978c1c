"""Where test time goes: every run ends with the total per test module, the modules over budget and
the time by kind of work.

`--durations` (the Makefile asks for 25) lists single slow tests; time spent in a module's shared
fixtures (a Spark Connect server, a pipeline world, the job environment) shows only summed per
module. The kinds (a Spark session starting, a script in a process of its own, a server starting,
the rehearsal's jobs) are what the helpers that do such work wrap in `timed(kind)`; what no helper
claims is the tests' own work in the test process. Under xdist the controller receives every
worker's reports, each carrying the kinds' seconds since the report before, so one table covers
the run. Both conftests register the plugins in `pytest_configure`: the table once, on the
controller; the kinds' carrier in every process that runs tests.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

NAME = "ac-module-times"
CARRIER = "ac-kind-times"
KIND_PROPERTY = "seconds_by_kind"
OWN_WORK = "the tests' own work in the test process (in-process stages, Spark actions, MLflow calls)"

_pending: defaultdict[str, float] = defaultdict(float)
_pending_lock = threading.Lock()
_inside: list[str] = []  # the kind being counted in this process, whichever thread started it


@contextlib.contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count the wall time of the block as `kind`. A block that starts while another is counted, in
    any thread (the rehearsal runs a job's tasks in threads), counts as part of that one."""
    with _pending_lock:
        outer = bool(_inside)
        if not outer:
            _inside.append(kind)
    if outer:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        with _pending_lock:
            _inside.clear()
            _pending[kind] += time.perf_counter() - started


class KindCarrier:
    """Puts the kinds' seconds counted since the last report on the next report of this process."""

    @pytest.hookimpl(tryfirst=True)  # before xdist sends the report to the controller
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        with _pending_lock:
            if _pending:
                report.user_properties.append((KIND_PROPERTY, dict(_pending)))
                _pending.clear()


# a module over this (setup + call + teardown of its tests, module fixtures included) is named at
# the end of every run, so a module that grows is seen when it grows
MODULE_BUDGET_SECONDS = 120.0


class ModuleTimes:
    def __init__(self, budget: float = MODULE_BUDGET_SECONDS) -> None:
        self.budget = budget
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.tests: Counter[str] = Counter()
        self.kinds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = report.nodeid.split("::", 1)[0]
        self.seconds[module] += report.duration
        if report.when == "setup":
            self.tests[module] += 1
        for name, value in report.user_properties:
            if name == KIND_PROPERTY:
                for kind, seconds in value.items():
                    self.kinds[kind] += seconds

    def kind_lines(self) -> list[str]:
        """Seconds per kind of work; the rest of the tests' time is their own work in the test process."""
        total = sum(self.seconds.values())
        claimed = dict(self.kinds)
        claimed[OWN_WORK] = max(total - sum(claimed.values()), 0.0)
        ranked = sorted(claimed.items(), key=lambda item: (-item[1], item[0]))
        return [f"{seconds:8.1f} s {seconds / total if total else 0:6.1%}  {kind}" for kind, seconds in ranked]

    def lines(self) -> list[str]:
        if not self.seconds:
            return []
        ranked = sorted(self.seconds.items(), key=lambda item: (-item[1], item[0]))
        total = sum(self.seconds.values())
        out = [f"{seconds:8.1f} s {self.tests[module]:5d} tests  {module}" for module, seconds in ranked]
        out.append(f"{total:8.1f} s {sum(self.tests.values()):5d} tests  all modules (summed over workers)")
        over = [(module, seconds) for module, seconds in ranked if seconds > self.budget]
        if over:
            out.append(f"over the budget of {self.budget:.0f} s per module (tests/timing.py):")
            out += [f"  {module}: {seconds:.1f} s" for module, seconds in over]
        return out

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.lines()
        if lines:
            terminalreporter.write_sep("=", "test time by module")
            for line in lines:
                terminalreporter.write_line(line)
            terminalreporter.write_sep("=", "test time by kind (summed over workers)")
            for line in self.kind_lines():
                terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(CARRIER):
        config.pluginmanager.register(KindCarrier(), CARRIER)
    if hasattr(config, "workerinput") or config.pluginmanager.has_plugin(NAME):
        return
    config.pluginmanager.register(ModuleTimes(), NAME)
