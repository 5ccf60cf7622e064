"""Profiles (profiles/<name>.yaml, or a path to a YAML file): the notebooks to run and their
parameters; ``extends: full`` puts a profile over a parent. Relative paths are resolved against
the project root, so notebooks behave the same from JupyterLab, papermill or a test.
"""

from pathlib import Path
from typing import Any

import yaml

from laionet.util.paths import project_root, resolve

MERGED = ("parameters", "notebook_parameters")  # deep-merged with the parent's; all else replaces


class ProfileNotFound(FileNotFoundError):
    """A profile name or path that names no file; the message lists the available ones."""


class ProfileError(ValueError):
    """A profile that cannot be read: not a mapping, a cycle of ``extends``, a bad ``extends``."""


def profile_name(profile: str) -> str:
    """The short name used in folder names and figure titles (``demo``, ``tiny``, ``my_lab``)."""
    return Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile


def _find(profile: str, base: Path | None = None) -> Path:
    """The file of ``profile``; a relative path in ``extends`` is taken from the child's folder."""
    p = Path(profile)
    if p.suffix not in (".yaml", ".yml"):
        path = project_root() / "profiles" / f"{profile}.yaml"
    else:
        path = base / p if base is not None and not p.is_absolute() else resolve(p)
    if not path.is_file():
        available = sorted(q.stem for q in (project_root() / "profiles").glob("*.yaml"))
        raise ProfileNotFound(
            f"profile {profile!r}: {path} does not exist. Available profiles: {available}; "
            "or pass a path to your own YAML file (start from `extends: full`, see README "
            "'Running on your data').")
    return path.resolve()


def _deep_merge(parent: dict, child: dict) -> dict:
    """``child`` over ``parent``; mappings merge key by key, anything else (lists too) replaces."""
    out = dict(parent)
    for k, v in child.items():
        both = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _deep_merge(out[k], v) if both else v
    return out


def load_profile(profile: str, _base: Path | None = None, _chain: tuple = ()) -> dict[str, Any]:
    """The profile as the runner and notebooks use it, ``extends`` resolved.

    ``extends: full`` (a profile name, or a YAML path relative to the child's folder) reads the
    parent first and puts the child over it: ``parameters`` and ``notebook_parameters``
    deep-merged, any other key (``notebooks`` too) the child's when it gives one. Chains are
    allowed, cycles and a missing parent are errors. The result keeps ``extends`` as the chain
    it came from (``["mylab", "full"]``) so ``runner list`` can say so."""
    path = _find(profile, _base)
    if path in _chain:
        raise ProfileError("`extends` makes a cycle: "
                           + " -> ".join(q.stem for q in (*_chain, path)))
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level, "
                           f"got {type(data).__name__}")
    data.setdefault("name", path.stem)
    parent_key = data.pop("extends", None)
    if parent_key in (None, ""):
        return data
    if not isinstance(parent_key, str):
        raise ProfileError(f"{path}: `extends` must be one profile name or YAML path, "
                           f"got {parent_key!r}")
    try:
        _find(parent_key, path.parent)
    except ProfileNotFound as exc:
        raise ProfileNotFound(f"{path}: extends {parent_key!r}, which is not found: {exc}"
                              ) from None
    parent = load_profile(parent_key, path.parent, (*_chain, path))
    merged = {k: v for k, v in parent.items() if k not in ("name", "description", "extends")}
    for k, v in data.items():
        if k in MERGED and v is not None and not isinstance(v, dict):
            raise ProfileError(f"profile {data['name']!r}: {k} must be a mapping, got {v!r}")
        merged[k] = _deep_merge(parent.get(k) or {}, v or {}) if k in MERGED else v
    merged["extends"] = [str(data["name"]), *parent.get("extends", [str(parent["name"])])]
    return merged
