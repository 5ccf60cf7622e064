"""Where things live: the project root, profile files, run folders and figure folders.

Relative paths in profiles and notebook parameters are resolved against the project root,
so notebooks behave the same from JupyterLab, papermill or a test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def project_root() -> Path:
    """The checkout's root: $LAIONET_ROOT, else the nearest parent with profiles/ and pyproject."""
    env = os.environ.get("LAIONET_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file() and (d / "profiles").is_dir():
                return d
    return Path.cwd().resolve()


def resolve(path: str | os.PathLike, root: Path | None = None) -> Path:
    """An absolute path; relative ones are taken from the project root. ``~`` is expanded."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (root or project_root()) / p


def profile_file(profile: str) -> Path:
    """profiles/<name>.yaml, or ``profile`` itself when it is a path to a YAML file."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        return resolve(p)
    return project_root() / "profiles" / f"{profile}.yaml"


def load_profile(profile: str) -> dict[str, Any]:
    path = profile_file(profile)
    if not path.is_file():
        available = sorted(q.stem for q in (project_root() / "profiles").glob("*.yaml"))
        raise FileNotFoundError(
            f"profile {profile!r}: {path} does not exist. Available profiles: {available}; "
            "or pass a path to your own YAML file (copy profiles/full.yaml to start)."
        )
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return data


def profile_name(profile: str) -> str:
    """The short name used in folder names and figure titles (``demo``, ``tiny``, ``my_lab``)."""
    return Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile


@dataclass(frozen=True)
class StagePaths:
    """Folders of one stage run: ``out`` (data products, manifest, executed notebook), ``figures``."""

    stage: str
    profile: str
    out: Path
    figures: Path

    def make(self) -> "StagePaths":
        self.out.mkdir(parents=True, exist_ok=True)
        self.figures.mkdir(parents=True, exist_ok=True)
        return self


def stage_paths(stage: str, profile: str, out_dir: str = "", figures_dir: str = "") -> StagePaths:
    """Default layout: runs/<profile>/<stage>/ and figures/<profile>/; overrides for sweeps."""
    name = profile_name(profile)
    out = resolve(out_dir) if out_dir else project_root() / "runs" / name / stage
    figs = resolve(figures_dir) if figures_dir else project_root() / "figures" / name
    return StagePaths(stage=stage, profile=name, out=out, figures=figs).make()


def stage_output(stage: str, profile: str) -> Path:
    """Where an upstream stage of the same profile wrote its products (for downstream reads)."""
    return project_root() / "runs" / profile_name(profile) / stage


def or_default(value: str, fallback: Any) -> str:
    """A path-like notebook parameter, or its fallback when left empty ("").

    Notebooks declare upstream inputs as ``name: str = ""``; empty means "the upstream stage
    of this profile" (or the demo world's file), filled in with this one rule.
    """
    return value or (str(fallback) if fallback is not None else "")
