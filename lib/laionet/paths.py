"""Where things live: the project root, profile files, run folders and figure folders.

Relative paths in profiles and notebook parameters are resolved against the project root,
so notebooks behave the same from JupyterLab, papermill or a test.
"""

from __future__ import annotations

import os
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


class ProfileNotFound(FileNotFoundError):
    """A profile name or path that names no file; the message lists the available ones."""


def load_profile(profile: str) -> dict[str, Any]:
    path = profile_file(profile)
    if not path.is_file():
        available = sorted(q.stem for q in (project_root() / "profiles").glob("*.yaml"))
        raise ProfileNotFound(
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
