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
_depth = threading.local()


@contextlib.contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count the wall time of the block as `kind`, once: a block inside another counts as the
    outer one, and blocks outside the main thread (the rehearsal's task threads) count as
    whatever the main thread is doing meanwhile."""
    counted = threading.current_thread() is threading.main_thread() and not getattr(_depth, "n", 0)
    _depth.n = getattr(_depth, "n", 0) + 1
    started = time.perf_counter()
    try:
        yield
    finally:
        _depth.n -= 1
        if counted:
            with _pending_lock:
                _pending[kind] += time.perf_counter() - started


class KindCarrier:
    """Puts the kinds' seconds counted since the last report on the next report of this process.

    An attribute of the report of its own, not `user_properties`: pytest hands a test's three
    reports one list (the item's), so an entry there would count again on each later phase.
    TestReport keeps unknown attributes through xdist's serialisation (`**extra`).
    """

    @pytest.hookimpl(tryfirst=True)  # before xdist sends the report to the controller
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        with _pending_lock:
            seconds, _ = dict(_pending), _pending.clear()
        # under xdist the controller sees each report a second time, carrying the worker's seconds
        for kind, more in (getattr(report, KIND_PROPERTY, None) or {}).items():
            seconds[kind] = seconds.get(kind, 0.0) + more
        setattr(report, KIND_PROPERTY, seconds)


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
        for kind, seconds in (getattr(report, KIND_PROPERTY, None) or {}).items():
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
