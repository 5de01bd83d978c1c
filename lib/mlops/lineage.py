"""Where a result came from: the code version that made it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def git_commit(cfg: Any = None, repo_dir: Path | None = None) -> str:
    """lineage.git_commit from config (bundle jobs pass ${bundle.git.commit}: workspace files have
    no .git), else GIT_COMMIT (CI), else the checkout's HEAD, else 'unknown'."""
    configured = OmegaConf.select(cfg, "lineage.git_commit") if cfg is not None else None
    if configured:
        return str(configured)
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    repo_dir = repo_dir or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
