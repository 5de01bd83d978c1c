"""Where test time goes: every run ends with the total per test module and the modules over budget.

`--durations` (the Makefile asks for 25) lists single slow tests; time spent in a module's shared
fixtures (a Spark Connect server, a pipeline world, the job environment) shows only summed per
module. Under xdist the controller receives every worker's reports, so one table covers the run.
Both conftests register the plugin in `pytest_configure`; it registers once, on the controller.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

NAME = "ac-module-times"
# a module over this (setup + call + teardown of its tests, module fixtures included) is named at
# the end of every run, so a module that grows is seen when it grows
MODULE_BUDGET_SECONDS = 120.0


class ModuleTimes:
    def __init__(self, budget: float = MODULE_BUDGET_SECONDS) -> None:
        self.budget = budget
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.tests: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = report.nodeid.split("::", 1)[0]
        self.seconds[module] += report.duration
        if report.when == "setup":
            self.tests[module] += 1

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


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or config.pluginmanager.has_plugin(NAME):
        return
    config.pluginmanager.register(ModuleTimes(), NAME)
