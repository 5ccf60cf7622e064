"""Notebook parameters: read from the ``parameters`` cell, checked, merged from a profile.

Every notebook declares its parameters in its first code cell, tagged ``parameters``, one per
line with a type and a comment (comment-only lines right below continue the help)::

    threshold: float = 0.82   # keep rows with similarity > threshold

papermill reads that cell (its Python translator's ``inspect``, what ``papermill --help-notebook``
uses) from the notebook Jupytext makes of the .py file; no kernel starts, so the runner checks
every value against its declared type before any kernel does.
"""

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
from papermill.translators import PythonTranslator

from laionet.pipeline.profiles import profile_name
from laionet.pipeline.stages import SHARED, allowed
from laionet.util.paths import project_root

TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


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
        want = TYPES[self.type]
        if value is None and self.default is None:
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


def read_parameters(path: str | Path) -> dict[str, Param]:
    """Declared parameters of a py:percent notebook, in order (papermill's reading of its
    ``parameters`` cell). A line papermill skips, a type outside TYPES or a default that is not
    a literal is a ValueError: papermill would otherwise drop that parameter without a word.
    Read once per version of the file (a run asks for each notebook's several times)."""
    path, st = Path(path), Path(path).stat()
    return dict(_read_parameters(path, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=64)
def _read_parameters(path: Path, mtime_ns: int, size: int) -> dict[str, Param]:
    cells = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{path}: no cell tagged 'parameters' "
                         "(a line `# %% tags=[\"parameters\"]`)")
    lines = cells[0].source.splitlines()
    out: dict[str, Param] = {}
    for p in PythonTranslator.inspect(cells[0]):
        if p.inferred_type_name not in TYPES:
            raise ValueError(f"{path}: parameter {p.name} has type {p.inferred_type_name}; use one "
                             f"of {sorted(TYPES)}")
        try:
            default = ast.literal_eval(p.default)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{path}: parameter {p.name}'s default {p.default!r} is not a literal "
                             "(papermill ends it at the first #: keep # out of defaults)") from exc
        helps = [p.help]
        i = next(i for i, ln in enumerate(lines) if re.match(rf"{p.name}\s*:", ln)) + 1
        while i < len(lines) and lines[i].lstrip().startswith("#"):  # the help, continued
            helps.append(lines[i].strip().lstrip("#").strip())
            i += 1
        out[p.name] = Param(p.name, p.inferred_type_name, default, " ".join(helps))
    if skipped := [ln for ln in lines
                   if re.match(r"\w", ln) and ln.split(":")[0].strip() not in out]:
        raise ValueError(f"{path}: papermill cannot read {skipped} of the parameters cell; write "
                         "one `name: type = value  # comment` per line")
    return out


def split_scoped(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``{"threshold": 1, "02.threshold": 2}`` -> unscoped ``{"threshold": 1}`` and scoped
    ``{"02": {"threshold": 2}}`` (the scope is a notebook number or name, as ``--only`` takes)."""
    plain: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        scope, _, name = key.rpartition(".")
        if scope:
            scoped.setdefault(scope, {})[name] = value
        else:
            plain[key] = value
    return plain, scoped


def scope_matches(scope: str, stem: str) -> bool:
    return stem == scope or stem.startswith(f"{scope}_")


def resolve_parameters(profile: dict, stem: str, decl: dict[str, Param], overrides: dict,
                       profile_key: str, cell: dict | None = None) -> tuple[dict, dict, dict]:
    """(every declared parameter's value, the ones that differ from the notebook's defaults,
    where each value came from: a layer's label below or ``default``).

    Layers, last wins, only names the notebook declares: the notebook's defaults, ``cell edit``
    (``cell``: the values a parameters cell run by hand left in the kernel,
    ``laionet.pipeline.interactive``), the profile's name, its ``parameters``, its
    ``notebook_parameters.<stem>``, ``-p name``, ``-p NN.name``. Each value is checked against
    its declared type and allowed values here, before any kernel starts."""
    base = {k: p.default for k, p in decl.items()}
    plain, scoped = split_scoped(overrides)
    name = profile.get("name") or profile_name(profile_key)
    layers = [("cell edit", {k: v for k, v in (cell or {}).items() if k in decl and v != base[k]}),
              ("profile", {"profile": str(profile_key)} if "profile" in decl else {}),
              (f"profile {name}: parameters",
               {k: v for k, v in (profile.get("parameters") or {}).items() if k in decl}),
              (f"profile {name}: notebook_parameters.{stem}",
               dict((profile.get("notebook_parameters") or {}).get(stem) or {})),
              ("-p", {k: v for k, v in plain.items() if k in decl}),
              *((f"-p {scope}.", values) for scope, values in scoped.items()
                if scope_matches(scope, stem))]
    given: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(decl, "default")
    for label, values in layers:
        given.update(values)
        sources.update(dict.fromkeys(values, label))
    given = {k: decl[k].check(v, stem) for k, v in given.items()}
    for k, v in given.items():
        if rule := allowed(k, v):
            raise ParameterError(f"{stem}: {k}={v!r} is not allowed: it must be {rule} "
                                 f"(`{k}: {decl[k].type} = {decl[k].default!r}`  # {decl[k].help})")
    full = {**base, **given}
    return full, {k: v for k, v in given.items() if v != base[k] or k == "profile"}, sources


def notebook_parameters(profile: dict, stem: str, decl: dict[str, Param], overrides: dict,
                        profile_key: str) -> tuple[dict, dict]:
    """(every declared parameter's value, the ones that differ from the notebook's defaults), as
    the runner gives them (``resolve_parameters`` without a cell)."""
    return resolve_parameters(profile, stem, decl, overrides, profile_key)[:2]


def notebook_file(name: str) -> Path:
    return project_root() / "notebooks" / f"{name}.py"


# ------------------------------------------------------------------------------ checks
def check_profile(profile: dict, decls: dict[str, dict[str, Param]]) -> None:
    """Every key of a profile must reach a notebook, and reach it with one meaning."""
    name = profile.get("name")
    allowed_keys = {"name", "description", "notebooks", "parameters", "notebook_parameters",
                    "extends"}
    if extra := sorted(set(profile) - allowed_keys):
        raise SystemExit(f"profile {name!r}: unknown top-level key(s) {extra}; a profile has "
                         f"{sorted(allowed_keys)}")
    _check_unscoped(profile.get("parameters") or {}, decls, f"profile {name!r}: parameters")
    for stem, own in (profile.get("notebook_parameters") or {}).items():
        if stem not in decls:
            raise SystemExit(f"profile {name!r}: notebook_parameters.{stem}: no such notebook in "
                             f"the profile; it runs {sorted(decls)}")
        # a typo in a profile would otherwise be dropped without a word
        if unknown := sorted(set(own or {}) - set(decls[stem])):
            raise SystemExit(f"profile {name!r}: notebook_parameters.{stem} has {unknown}, which "
                             f"{stem} does not declare; it declares {sorted(decls[stem])}")


def _check_unscoped(values: dict, decls: dict[str, dict[str, Param]], where: str) -> None:
    for key in values:
        users = {stem: d[key] for stem, d in decls.items() if key in d}
        if not users:
            raise SystemExit(f"{where}: {key!r} is declared by none of {sorted(decls)} "
                             "(see `python -m laionet.pipeline.runner list`)")
        declared_as = {(p.type, repr(p.default), p.help) for p in users.values()}
        if len(users) > 1 and key not in SHARED and len(declared_as) > 1:
            listing = "; ".join(f"{stem}: {p.help}" for stem, p in users.items())
            raise SystemExit(f"{where}: {key!r} means different things in {sorted(users)} "
                             f"({listing}). Scope it to one notebook, e.g. `-p {min(users)[:2]}."
                             f"{key} VALUE` or under notebook_parameters in a profile")


def check_overrides(overrides: dict, decls: dict[str, dict[str, Param]]) -> None:
    """``-p`` values: an unscoped name reaches a notebook with one meaning, a scoped one
    (``-p 02.threshold``) names exactly one selected notebook that declares it."""
    plain, scoped = split_scoped(overrides)
    _check_unscoped(plain, decls, "-p")
    for scope, values in scoped.items():
        stems = [s for s in decls if scope_matches(scope, s)]
        if len(stems) != 1:
            raise SystemExit(f"-p {scope}.…: {scope!r} names {'several' if stems else 'none'} of "
                             f"the selected notebooks {sorted(decls)}")
        if unknown := sorted(set(values) - set(decls[stems[0]])):
            raise SystemExit(f"-p {scope}.{unknown[0]}: {stems[0]} declares no {unknown}; it "
                             f"declares {sorted(decls[stems[0]])}")
