"""Where a result came from: the code version that made it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git_commit(repo_dir: Path | None = None) -> str:
    """The checkout's commit, or GIT_COMMIT (set by CI and bundle jobs), or 'unknown'."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    repo_dir = repo_dir or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
