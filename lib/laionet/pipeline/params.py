"""Notebook parameters: read from the ``parameters`` cell, checked, merged from a profile.

Every notebook declares its parameters in its first code cell, tagged ``parameters``, one per
line with a type and a comment::

    threshold: float = 0.82   # keep rows with similarity > threshold

This module reads that cell straight from the py:percent file (no kernel, no conversion), so
the runner can check every value against its declared type before any kernel starts, and
``python -m laionet.pipeline.runner list`` can show every parameter in an instant.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laionet.pipeline.profiles import profile_name
from laionet.pipeline.stages import allowed
from laionet.util.paths import project_root

TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
_CELL = re.compile(r"^# %%")
_PARAMS_CELL = re.compile(r"^# %%.*tags=\[[^\]]*[\"']parameters[\"']")


class ParameterError(ValueError):
    """A parameter value that does not fit what its notebook declares."""


@dataclass(frozen=True)
class Param:
    """One declared parameter: ``name: type = default  # help``."""

    name: str
    type: str
    default: Any
    help: str

    def check(self, value: Any, where: str) -> Any:
        """``value`` converted to the declared type, or a ParameterError naming ``where``."""
        want = TYPES.get(self.type)
        if want is None or value is None and self.default is None:
            return value
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `-p classes 123` is the string "123"; YAML read it as a number
        if want is list and isinstance(value, tuple):
            return list(value)
        if isinstance(value, want) and not (want is int and isinstance(value, bool)):
            return value
        raise ParameterError(
            f"{where}: {self.name} must be {self.type} (declared `{self.name}: {self.type} = "
            f"{self.default!r}`  # {self.help}), got {value!r} ({type(value).__name__})")


def parameters_cell(path: str | Path) -> tuple[str, int]:
    """The source of the ``parameters`` cell of a py:percent notebook and its first line number."""
    lines = Path(path).read_text().splitlines()
    for i, line in enumerate(lines):
        if _PARAMS_CELL.match(line):
            body = []
            for nxt in lines[i + 1:]:
                if _CELL.match(nxt):
                    break
                body.append(nxt)
            return "\n".join(body), i + 2
    raise ValueError(f"{path}: no cell tagged 'parameters' (a line `# %% tags=[\"parameters\"]`)")


def read_parameters(path: str | Path) -> dict[str, Param]:
    """Declared parameters of a notebook, in order. Help is the line's trailing comment plus
    any comment-only lines right below it."""
    src, first = parameters_cell(path)
    lines = src.splitlines()
    tree = ast.parse(src, filename=str(path))
    out: dict[str, Param] = {}
    for node in tree.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            raise ValueError(f"{path}:{first + node.lineno - 1}: the parameters cell may only hold "
                             "`name: type = value  # comment` lines")
        name = node.target.id
        kind = ast.unparse(node.annotation)
        if kind not in TYPES:
            raise ValueError(f"{path}: parameter {name} has type {kind}; use one of {sorted(TYPES)}")
        try:
            default = ast.literal_eval(node.value) if node.value is not None else None
        except ValueError as exc:
            raise ValueError(f"{path}: parameter {name}'s default must be a literal") from exc
        text = lines[node.lineno - 1]
        helps = [text.split("#", 1)[1].strip()] if "#" in text[node.end_col_offset:] else []
        for more in lines[node.end_lineno:]:
            if not more.strip().startswith("#"):
                break
            helps.append(more.strip().lstrip("#").strip())
        out[name] = Param(name, kind, default, " ".join(helps))
    return out


def split_scoped(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``{"threshold": 1, "02.threshold": 2}`` -> unscoped ``{"threshold": 1}`` and scoped
    ``{"02": {"threshold": 2}}`` (the scope is a notebook number or name, as ``--only`` takes)."""
    plain: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        scope, dot, name = key.rpartition(".")
        if dot and scope:
            scoped.setdefault(scope, {})[name] = value
        else:
            plain[key] = value
    return plain, scoped


def _scope_matches(scope: str, stem: str) -> bool:
    return stem == scope or stem.startswith(f"{scope}_")


def parameter_layers(profile: dict, stem: str, decl: dict[str, Param], overrides: dict,
                     profile_key: str) -> list[tuple[str, dict]]:
    """The values one notebook is given, as (where from, values) layers in merge order, last wins:
    the profile's name, its ``parameters``, its ``notebook_parameters.<stem>``, ``-p name``,
    ``-p NN.name``. Only names the notebook declares."""
    plain, scoped = split_scoped(overrides)
    name = profile.get("name") or profile_name(profile_key)
    layers = [("profile", {"profile": str(profile_key)} if "profile" in decl else {}),
              (f"profile {name}: parameters",
               {k: v for k, v in (profile.get("parameters") or {}).items() if k in decl}),
              (f"profile {name}: notebook_parameters.{stem}",
               dict((profile.get("notebook_parameters") or {}).get(stem) or {})),
              ("-p", {k: v for k, v in plain.items() if k in decl})]
    layers += [(f"-p {scope}.", dict(values)) for scope, values in scoped.items()
               if _scope_matches(scope, stem)]
    return layers


def resolve_parameters(profile: dict, stem: str, decl: dict[str, Param], overrides: dict,
                       profile_key: str, cell: dict | None = None) -> tuple[dict, dict, dict]:
    """(every declared parameter's value, the ones that differ from the notebook's defaults,
    where each value came from: a ``parameter_layers`` label, ``cell edit`` or ``default``).

    ``cell``: values edited in the notebook's parameters cell, by a user running it in
    JupyterLab (``laionet.pipeline.stage.open_stage``); they win over every layer. Each value is checked
    against the declared type here, before any kernel starts."""
    layers = parameter_layers(profile, stem, decl, overrides, profile_key)
    if cell:
        layers.append(("cell edit", dict(cell)))
    given: dict[str, Any] = {}
    sources: dict[str, str] = {k: "default" for k in decl}
    for label, values in layers:
        given.update(values)
        sources.update(dict.fromkeys(values, label))
    given = {k: decl[k].check(v, stem) for k, v in given.items()}
    for k, v in given.items():
        rule = allowed(k, v)
        if rule:
            raise ParameterError(f"{stem}: {k}={v!r} is not allowed: it must be {rule} "
                                 f"(`{k}: {decl[k].type} = {decl[k].default!r}`  # {decl[k].help})")
    full = {k: p.default for k, p in decl.items()}
    full.update(given)
    changed = {k: v for k, v in given.items() if v != decl[k].default or k == "profile"}
    return full, changed, sources


def notebook_parameters(profile: dict, stem: str, decl: dict[str, Param], overrides: dict,
                        profile_key: str) -> tuple[dict, dict]:
    """(every declared parameter's value, the ones that differ from the notebook's defaults).

    Order, last wins: the cell's default, the profile's ``parameters``, its
    ``notebook_parameters.<stem>``, ``-p name``, ``-p NN.name`` (``parameter_layers``). Each
    value is checked against the declared type here, before any kernel starts."""
    full, changed, _ = resolve_parameters(profile, stem, decl, overrides, profile_key)
    return full, changed


def notebook_file(name: str) -> Path:
    return project_root() / "notebooks" / f"{name}.py"
