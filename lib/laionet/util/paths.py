"""The project root: relative paths in profiles and notebook parameters are taken from it, so
notebooks behave the same from JupyterLab, papermill or a test."""

import os
from pathlib import Path


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
