"""Stage scripts stopped at a chosen point of their work, to be killed there (kill -9) or left
alive as a run still writing: the fault tests of local and catalog worlds share them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs a stage script that stops for good at one point of its work: the point happens, a marker
# file appears, and the process sleeps until the test kills it. Points:
#   begun:<stage>     right after the journal has recorded a write unit of that stage, before its first commit
#   commit:<table>    right after that table's write has committed, before the journal records it
#   recorded:<key>    right after the journal has recorded the write of that table key
#   mlflow:<function> right after the stage's first `mlflow.<function>` of an evaluation/ artifact
STOP_AT = """
import pathlib, runpy, sys, time

marker, point = pathlib.Path(sys.argv.pop(1)), sys.argv.pop(1)
kind, _, target = point.partition(":")

def stop_after(owner, method, when):
    original = getattr(owner, method)
    def stopping(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            marker.write_text(point)
            time.sleep(3600)
        return result
    setattr(owner, method, stopping)

if kind == "commit":
    from mlops import tables
    # every store a world may write through: local Delta paths, a catalog, a catalog of versioned tables
    for store in (tables.DeltaPathTableStore, tables.CatalogTableStore, tables.VersionedCatalogTableStore):
        for method in ("overwrite", "replace_dates"):
            if method in vars(store):
                stop_after(store, method, lambda self, name, *rest, **named: name.table == target)
elif kind == "recorded":
    from mlops import journal
    stop_after(journal.WriteUnit, "wrote", lambda self, key, version: key == target)
elif kind == "begun":
    from mlops import journal
    # RunContext.write_all imports begin_unit when it writes, so it finds this one; one table is no unit
    stop_after(journal, "begin_unit", lambda journal_, cfg, names, *rest: len(names) > 1 and rest[-1] == target)
elif kind == "mlflow":
    import mlflow
    stop_after(mlflow, target, lambda data, path, *rest, **named: str(path).startswith("evaluation/"))
else:
    raise SystemExit(f"unknown stop point {point}")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def kill_at(point: str, script_name: str, overrides: list[str], tmp_path: Path) -> None:
    """Run the script until it reaches `point`, then kill -9 it there."""
    stop_at(point, script_name, overrides, tmp_path).kill()


class Stopped:
    """A script process that has reached its stop point and sleeps there, alive, until killed."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        assert self.process.returncode == -signal.SIGKILL


def stop_at(point: str, script_name: str, overrides: list[str], tmp_path: Path) -> Stopped:
    """Run the script until it reaches `point`, and leave it there, alive."""
    marker, log = tmp_path / "stopped", tmp_path / f"{script_name}.stderr"
    with log.open("w") as stderr:  # a file, not a pipe: a full pipe would stall the script before its point
        process = subprocess.Popen(
            [sys.executable, "-c", STOP_AT, str(marker), point, str(REPO / "scripts" / script_name), *overrides],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"{script_name} ended before {point}:\n{log.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"{script_name} never reached {point}"
        time.sleep(0.2)
    return Stopped(process)
