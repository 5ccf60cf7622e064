"""Where things live: the project root, profile files, run folders and figure folders.

Relative paths in profiles and notebook parameters are resolved against the project root,
so notebooks behave the same from JupyterLab, papermill or a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from laionet.util.paths import project_root, resolve


def profile_file(profile: str) -> Path:
    """profiles/<name>.yaml, or ``profile`` itself when it is a path to a YAML file."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        return resolve(p)
    return project_root() / "profiles" / f"{profile}.yaml"


class ProfileNotFound(FileNotFoundError):
    """A profile name or path that names no file; the message lists the available ones."""


class ProfileError(ValueError):
    """A profile that cannot be read: not a mapping, a cycle of ``extends``, a bad ``extends``."""


def _read_profile(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _find(profile: str, base: Path | None = None) -> Path:
    """The file of ``profile``; a relative path in ``extends`` is taken from the child's folder."""
    p = Path(profile)
    if base is not None and p.suffix in (".yaml", ".yml") and not p.is_absolute():
        path = base / p
    else:
        path = profile_file(profile)
    if not path.is_file():
        available = sorted(q.stem for q in (project_root() / "profiles").glob("*.yaml"))
        raise ProfileNotFound(
            f"profile {profile!r}: {path} does not exist. Available profiles: {available}; "
            "or pass a path to your own YAML file (start from `extends: full`, see README "
            "'Running on your data')."
        )
    return path.resolve()


def _deep_merge(parent: dict, child: dict) -> dict:
    """``child`` over ``parent``; mappings merge key by key, anything else (lists too) replaces."""
    out = dict(parent)
    for k, v in child.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MERGED = ("parameters", "notebook_parameters")  # deep-merged with the parent's; all else replaces


def merge_profiles(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child profile over its parent: ``parameters`` and ``notebook_parameters`` deep-merged,
    ``notebooks`` (and every other key) the child's when it gives one, else the parent's."""
    out = {k: v for k, v in parent.items() if k not in ("name", "description")}
    for k, v in child.items():
        if k == "extends":
            continue
        if k in MERGED:
            if v is not None and not isinstance(v, dict):
                raise ProfileError(f"profile {child.get('name')!r}: {k} must be a mapping, got {v!r}")
            out[k] = _deep_merge(parent.get(k) or {}, v or {})
        else:
            out[k] = v
    return out


def load_profile(profile: str) -> dict[str, Any]:
    """The profile as the runner and notebooks use it, ``extends`` resolved.

    ``extends: full`` (a profile name, or a YAML path relative to the child's folder) reads the
    parent first and puts the child over it (``merge_profiles``); chains are allowed, cycles and
    a missing parent are errors. The result keeps ``extends`` as the chain it came from
    (``["mylab", "full"]``) so ``runner list`` can say so."""
    path = _find(profile)
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    ref, base = profile, None
    while True:
        path = _find(ref, base) if chain else path
        if path in chain:
            names = " -> ".join(q.stem for q in [*chain, path])
            raise ProfileError(f"profile {profile!r}: `extends` makes a cycle: {names}")
        data = _read_profile(path)
        data.setdefault("name", path.stem)
        chain.append(path)
        layers.append(data)
        parent = data.get("extends")
        if parent in (None, ""):
            break
        if not isinstance(parent, str):
            raise ProfileError(f"{path}: `extends` must be one profile name or YAML path, got {parent!r}")
        try:
            _find(parent, path.parent)
        except ProfileNotFound as exc:
            raise ProfileNotFound(f"{path}: extends {parent!r}, which is not found: {exc}") from None
        ref, base = parent, path.parent
    merged = layers[-1]
    for layer in reversed(layers[:-1]):
        merged = merge_profiles(merged, layer)
    merged["name"] = layers[0]["name"]
    if len(layers) > 1:
        merged["extends"] = [str(layer["name"]) for layer in layers]
    else:
        merged.pop("extends", None)
    return merged


def profile_name(profile: str) -> str:
    """The short name used in folder names and figure titles (``demo``, ``tiny``, ``my_lab``)."""
    return Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile
