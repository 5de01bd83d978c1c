"""The environment a serverless job task runs in, rebuilt here for the bundle rehearsal and the
Databricks Connect tests: no checkout, no editable install, no development packages.

What a serverless task of this bundle gets on Databricks, and what stands in for it:
- the files `bundle deploy` syncs (git's files minus databricks.yml's `sync.exclude`), in a folder
  outside the checkout: `synced_copy`;
- the project wheel, built by the bundle's own artifact command from those files: `build_wheels`;
- the serverless environment version's Python, its Databricks Connect (the Spark of a serverless
  task) and base libraries (`SERVERLESS`), then exactly the job environment's `dependencies`, with
  `../dist/*.whl` replaced by the built wheel as the CLI replaces it: `job_python`.

So a dependency missing from the job environment, a file the wheel does not ship (config, data,
log4j properties), a file the sync leaves out, or a version range that does not resolve beside the
serverless base fails here, naming what is missing. The libraries are cached between runs, keyed by
everything that decides them (Python, base, dependency list, the wheel's own requirements); the
wheel itself is reinstalled on every run, since it is the code under test.

`python -m integration_tests.job_environment` builds it ahead of time (.ci/run starts this in the
background while the unit tests run); a build in progress is waited for, never started twice.
"""

from __future__ import annotations

import email.parser
import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServerlessVersion:
    python: str
    # installed before the job's dependencies, as the base environment is there before them
    base: tuple[str, ...]


# Serverless environment version 5 (released 2026-02-25, supported to 2029-02-25): Python 3.12.3 and
# Databricks Connect 18.0 (https://docs.databricks.com/aws/en/release-notes/serverless/environment-version/),
# and the base libraries a task's own dependencies meet, as pinned for the 5.x client image
# (https://docs.databricks.com/aws/en/assets/files/requirements-8e972929dcac249709ddd4214f2e1b2a.txt, which
# states it matches client.5.x/standard_all_pinned_versions). databricks.yml's
# serverless_environment_version and setup.cfg's `databricks` extra name the same version (a unit
# test keeps the three in step).
SERVERLESS = {
    "5": ServerlessVersion(
        python="3.12",
        base=(
            "databricks-connect==18.0.*",
            "pandas==2.2.3",
            "numpy==2.1.3",
            "pyarrow==21.0.0",
            "databricks-sdk==0.67.0",
            "protobuf==5.29.4",
            "grpcio==1.67.0",
        ),
    )
}


class EnvironmentUnavailable(RuntimeError):
    """pip could not install what the job environment lists (typically: no package index reachable)."""


def cache_root() -> Path:
    return Path(os.environ.get("AC_MLOPS_CACHE", Path.home() / ".cache" / "ac-mlops"))


def find_python(version: str) -> str:
    """An interpreter of `version`: `python<version>` on PATH, else one pyenv installed (its shim
    answers only for the versions pyenv has selected)."""
    candidates = [f"python{version}"]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    for candidate in candidates:
        found = (
            subprocess.run(
                [candidate, "-c", "import sys; print(sys.executable, '%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
            )
            if shutil.which(candidate) or Path(candidate).is_file()
            else None
        )
        if found is not None and found.returncode == 0 and found.stdout.split()[-1] == version:
            return found.stdout.split()[0]
    raise EnvironmentUnavailable(
        f"no Python {version} found (on PATH as python{version}, or under {pyenv_root}/versions): "
        f"the job environment's serverless version runs Python {version}; install it"
    )


# -- the synced files and the wheel ------------------------------------------------------------------


def _pattern(glob_pattern: str) -> re.Pattern:
    """A sync exclude (gitignore-like: `**` any folders, `*` within one name) as a regex on a relative path."""
    out, i = "", 0
    while i < len(glob_pattern):
        if glob_pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob_pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob_pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(glob_pattern[i]), i + 1
    # a pattern without a slash matches a name at any depth, as in gitignore
    return re.compile(out if "/" in glob_pattern else f"(?:.*/)?{out}")


def synced_files(root: Path = REPO) -> list[str]:
    """What `bundle deploy` uploads: the files git tracks or would track (.gitignore honoured), minus
    databricks.yml's `sync.exclude`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    bundle = yaml.safe_load((root / "databricks.yml").read_text(encoding="utf-8"))
    excludes = [_pattern(p) for p in (bundle.get("sync") or {}).get("exclude") or []]
    return sorted(
        path
        for path in listed
        if path and (root / path).is_file() and not any(rule.fullmatch(path) for rule in excludes)
    )


def synced_copy(destination: Path, root: Path = REPO) -> Path:
    """The synced files in `destination`, which must lie outside the checkout."""
    if destination.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{destination} is inside the checkout {root}: a job has no checkout")
    for relative in synced_files(root):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    return destination


def build_wheels(bundle_root: Path) -> list[Path]:
    """Run each whl artifact's own `build` command where databricks.yml says (`path`), as the CLI does."""
    bundle = yaml.safe_load((bundle_root / "databricks.yml").read_text(encoding="utf-8"))
    wheels: list[Path] = []
    for name, artifact in (bundle.get("artifacts") or {}).items():
        if artifact.get("type") != "whl":
            continue
        where = bundle_root / artifact.get("path", ".")
        built = subprocess.run(artifact["build"], shell=True, cwd=where, capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(
                f"artifact {name}: `{artifact['build']}` exited {built.returncode}:\n{built.stderr[-3000:]}"
            )
        wheels += sorted(path.resolve() for path in (where / "dist").glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"no wheel built by the artifacts of {bundle_root / 'databricks.yml'}")
    return wheels


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's own Requires-Dist, without extras' requirements."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(metadata).decode("utf-8"))
    return sorted(req for req in message.get_all("Requires-Dist") or [] if "extra ==" not in req)


# -- the environment ---------------------------------------------------------------------------------


def resolve_dependencies(dependencies: list[str], resource_folder: Path) -> tuple[list[Path], list[str]]:
    """(wheels, requirements) of a job environment's `dependencies`: a path (`../dist/*.whl`) is a
    local library the CLI uploads and replaces by its workspace path; a glob that matches nothing
    fails, as `bundle deploy` does."""
    wheels, requirements = [], []
    for entry in dependencies:
        if entry.startswith((".", "/")):
            matched = sorted(Path(p).resolve() for p in glob.glob(str(resource_folder / entry)))
            if not matched:
                raise FileNotFoundError(
                    f"job environment dependency {entry}: no file matches (relative to {resource_folder})"
                )
            wheels += matched
        else:
            requirements.append(entry)
    return wheels, requirements


def job_python(version: str, requirements: list[str], wheels: list[Path], *, refresh_wheels: bool = True) -> Path:
    """The python of a clean environment: the serverless base, then `requirements` and the wheels'
    own requirements; the wheels themselves installed fresh (no deps) on every call."""
    serverless = SERVERLESS[version]
    declared = sorted({*requirements, *(req for wheel in wheels for req in wheel_requirements(wheel))})
    key = hashlib.sha256("\n".join([serverless.python, *serverless.base, "--", *declared]).encode()).hexdigest()
    venv = cache_root() / f"job-env-v{version}-{key[:12]}"
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for a build in progress
        if not (venv / ".ready").is_file():
            subprocess.run([find_python(serverless.python), "-m", "venv", "--clear", str(venv)], check=True)
            _pip(python, list(serverless.base), "the serverless base")
            # the job's dependencies, then the wheel's requirements, on top of the base, as a task installs them
            _pip(python, [*requirements, *(str(wheel) for wheel in wheels)], "the job environment's dependencies")
            (venv / ".ready").write_text("\n".join(declared))
        if refresh_wheels:
            _pip(python, ["--no-deps", "--force-reinstall", *(str(wheel) for wheel in wheels)], "the project wheel")
    return python


def _pip(python: Path, arguments: list[str], what: str) -> None:
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if installed.returncode != 0:
        lines = [line for line in installed.stderr.strip().splitlines() if not line.startswith("WARNING")]
        raise EnvironmentUnavailable(f"pip could not install {what}: {' | '.join(lines[-3:]) or installed.returncode}")


# What the rehearsal stands in for (StandIns) never runs there, so the job environment must at least
# import it: a package missing from the job's dependencies then fails, named, instead of passing
# unseen. package -> the import our code makes on Databricks.
REPLACED_IMPORTS = {
    "databricks-feature-engineering": (
        "from mlops.feature_store import DatabricksFeatureStore; DatabricksFeatureStore._sdk()"
    ),
    "mlflow (its Unity Catalog registry store)": (
        "from mlflow.store._unity_catalog.registry.rest_store import UcModelRegistryStore"
    ),
}


def missing_imports(python: Path | str) -> list[str]:
    """`<package>: <the error>` for every replaced part the environment of `python` cannot import."""
    missing = []
    for package, statement in REPLACED_IMPORTS.items():
        found = subprocess.run([str(python), "-c", statement], capture_output=True, text=True, timeout=300)
        if found.returncode != 0:
            last = (found.stderr.strip().splitlines() or [f"exit {found.returncode}"])[-1]
            missing.append(f"{package}: {last}")
    return missing


@dataclass(frozen=True)
class JobEnvironment:
    root: Path  # the synced files: a rehearsal loads the bundle from here and runs its scripts
    python: Path
    wheels: tuple[Path, ...]


def prepare(destination: Path, root: Path = REPO) -> JobEnvironment:
    """Sync, build, and the environment of the bundle's job tasks (every job environment of the
    bundle lists the same dependencies: one environment serves them all)."""
    copy = synced_copy(destination, root)
    wheels = build_wheels(copy)
    bundle = yaml.safe_load((copy / "databricks.yml").read_text(encoding="utf-8"))
    version = str(bundle["variables"]["serverless_environment_version"]["default"])
    dependencies, folder = _job_dependencies(copy)
    wheel_paths, requirements = resolve_dependencies(dependencies, folder)
    if sorted(wheel_paths) != sorted(wheels):
        raise RuntimeError(f"the job environment installs {wheel_paths}, but the artifacts built {wheels}")
    return JobEnvironment(copy, job_python(version, requirements, wheels), tuple(wheels))


def _job_dependencies(root: Path) -> tuple[list[str], Path]:
    """The one dependency list every job environment of the bundle declares, and its file's folder."""
    found: dict[tuple[str, ...], Path] = {}
    for path in sorted((root / "resources").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        places = [
            doc.get("resources") or {},
            *((t or {}).get("resources") or {} for t in (doc.get("targets") or {}).values()),
        ]
        for resources in places:
            for job in (resources.get("jobs") or {}).values():
                for environment in job.get("environments") or []:
                    found.setdefault(tuple(environment["spec"].get("dependencies") or ()), path.parent)
    if len(found) != 1:
        raise RuntimeError(f"expected one job dependency list in resources/, found {len(found)}: {list(found)}")
    ((entries, folder),) = found.items()
    return list(entries), folder


if __name__ == "__main__":
    import tempfile

    try:
        environment = prepare(Path(tempfile.mkdtemp(prefix="ac-mlops-job-")))
        print(environment.python)
    except EnvironmentUnavailable as error:
        print(f"job environment not built: {error}", file=sys.stderr)
        sys.exit(1)
