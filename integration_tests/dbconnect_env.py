"""The databricks-connect virtual environment the remote tests use, built once and cached.

It is this project installed with setup.cfg's `databricks` and `dev` extras, `-e '<repo>[databricks,dev]'`:
the Databricks dependencies are declared once, in that extra, and this is what tests them.
databricks-connect brings its own pyspark, so it cannot share an environment with the `local` extra.
The cache key hashes setup.cfg, so a change of the extra (or of any other requirement) builds a
new environment. `python -m integration_tests.dbconnect_env` builds it ahead of time (CI starts this
in the background while the unit tests run); the test waits for a build in progress instead of
starting a second one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = "databricks,dev"


class EnvironmentUnavailable(RuntimeError):
    """pip could not install the requirements (typically: no package index reachable)."""


def venv_dir() -> Path:
    key = hashlib.sha256("\n".join([EXTRAS, (REPO / "setup.cfg").read_text()]).encode()).hexdigest()
    cache_root = Path(os.environ.get("AC_MLOPS_CACHE", Path.home() / ".cache" / "ac-mlops"))
    return cache_root / f"dbconnect-py{sys.version_info.major}{sys.version_info.minor}-{key[:12]}"


def _installs_this_checkout(python: Path) -> bool:
    found = subprocess.run([str(python), "-c", "import mlops; print(mlops.__file__)"], capture_output=True, text=True)
    return found.returncode == 0 and Path(found.stdout.strip()).resolve().is_relative_to(REPO / "lib")


def ensure() -> Path:
    """The environment's python, building it first if needed (under a lock: one builder at a time)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for a build in progress
        if (venv / ".ready").is_file():
            if not _installs_this_checkout(python):
                # the cache is shared by checkouts (same setup.cfg, same key); the editable install is not
                subprocess.run(
                    [
                        str(python),
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--no-deps",
                        "-e",
                        str(REPO),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f"{REPO}[{EXTRAS}]"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if install.returncode != 0:
            lines = install.stderr.strip().splitlines()
            raise EnvironmentUnavailable(lines[-1] if lines else f"pip exited {install.returncode}")
        check = subprocess.run(
            [str(python), "-c", "import databricks.connect, mlops, pyspark; print(pyspark.__version__)"],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            raise RuntimeError(f"the databricks-connect environment is broken:\n{check.stderr[-3000:]}")
        (venv / ".ready").write_text(check.stdout)
    return python


if __name__ == "__main__":
    try:
        print(ensure())
    except EnvironmentUnavailable as error:
        print(f"databricks-connect environment not built: {error}", file=sys.stderr)
        sys.exit(1)
