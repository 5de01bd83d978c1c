"""The time table every test run ends with (tests/timing.py), on a run of a small project of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.timing import KIND_PROPERTY, OWN_WORK, KindCarrier, ModuleTimes, timed

REPO = Path(__file__).resolve().parents[1]


def report(nodeid: str, when: str, duration: float, user_properties: list | None = None) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid, ("x", 1, "t"), {}, "passed", None, when, [], duration=duration, user_properties=user_properties
    )


def test_module_times_sum_every_phase_and_name_the_modules_over_budget():
    times = ModuleTimes(budget=5.0)
    for nodeid, when, duration in [
        ("a/test_slow.py::test_one", "setup", 4.0),  # a module fixture's start counts for its module
        ("a/test_slow.py::test_one", "call", 1.5),
        ("a/test_slow.py::test_one", "teardown", 0.5),
        ("a/test_slow.py::test_two", "setup", 0.0),
        ("a/test_slow.py::test_two", "call", 0.5),
        ("a/test_fast.py::test_it[1]", "setup", 0.1),
        ("a/test_fast.py::test_it[1]", "call", 0.2),
    ]:
        times.pytest_runtest_logreport(report(nodeid, when, duration))
    lines = times.lines()
    assert lines[0].split() == ["6.5", "s", "2", "tests", "a/test_slow.py"]
    assert lines[1].split() == ["0.3", "s", "1", "tests", "a/test_fast.py"]
    assert lines[2].split()[:4] == ["6.8", "s", "3", "tests"]
    assert lines[3] == "over the budget of 5 s per module (tests/timing.py):"
    assert lines[4:] == ["  a/test_slow.py: 6.5 s"]


def test_nothing_over_budget_is_not_listed_and_no_run_prints_nothing():
    assert ModuleTimes().lines() == []
    times = ModuleTimes(budget=5.0)
    times.pytest_runtest_logreport(report("a/test_fast.py::test_it", "call", 0.2))
    assert not any("budget" in line for line in times.lines())


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_run_ends_with_the_table_once_also_under_xdist(tmp_path, workers):
    """Both conftests register the plugin (tests/, integration_tests/): it must count once, and the
    workers' reports reach the controller's table."""
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "conftest.py").write_text("from tests.timing import pytest_configure  # noqa\n")
        (tmp_path / folder / f"test_{folder}.py").write_text(
            "import time\nfrom tests.timing import timed\n\ndef test_a():\n    time.sleep(0.2)\n\n"
            "def test_b():\n    with timed('napping'):\n        time.sleep(0.3)\n"
        )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *workers, "one", "two"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    table = run.stdout.split("test time by module", 1)[1].splitlines()[1:4]
    assert run.stdout.count("test time by module") == 1
    assert sorted(line.split()[2:] for line in table[:2]) == [
        ["2", "tests", "one/test_one.py"],
        ["2", "tests", "two/test_two.py"],
    ]
    assert table[2].split()[2:] == ["4", "tests", "all", "modules", "(summed", "over", "workers)"]
    assert float(table[0].split()[0]) >= 0.2
    # the kinds counted in the workers reach the controller: both modules' naps, and the rest
    kinds = run.stdout.split("test time by kind (summed over workers)", 1)[1].splitlines()[1:3]
    by_kind = {line.split("%", 1)[1].strip(): float(line.split()[0]) for line in kinds}
    assert set(by_kind) == {"napping", OWN_WORK}
    assert 0.6 <= by_kind["napping"] < 1.5 and by_kind[OWN_WORK] >= 0.4


def test_a_kind_inside_another_counts_once_as_the_outer_and_rides_on_the_next_report():
    carrier, times = KindCarrier(), ModuleTimes()
    shared: list = []  # pytest gives a test's setup, call and teardown reports the item's one list
    with timed("outer"), timed("inner"):
        time.sleep(0.05)
    first = report("a/test_x.py::test_one", "setup", 1.0, shared)
    carrier.pytest_runtest_logreport(first)
    assert set(getattr(first, KIND_PROPERTY)) == {"outer"} and getattr(first, KIND_PROPERTY)["outer"] >= 0.05
    second = report("a/test_x.py::test_one", "call", 1.0, shared)
    carrier.pytest_runtest_logreport(second)
    assert getattr(second, KIND_PROPERTY) == {}  # nothing counted since the first report
    assert shared == []  # the item's list is left alone, so no later phase carries the seconds again
    for each in (first, second):
        times.pytest_runtest_logreport(each)
    assert [line.split("%", 1)[1].strip() for line in times.kind_lines()] == [OWN_WORK, "outer"]
    assert times.kinds["outer"] == getattr(first, KIND_PROPERTY)["outer"]  # counted once, not once per report


def test_blocks_in_other_threads_are_not_counted_apart_from_the_main_threads_work():
    carrier = KindCarrier()

    def in_a_thread() -> None:
        with timed("in a thread"):
            pass

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    with timed("main"):
        pass
    each = report("a/test_x.py::test_one", "call", 1.0)
    carrier.pytest_runtest_logreport(each)
    assert set(getattr(each, KIND_PROPERTY)) == {"main"}
