"""A notebook run by hand (JupyterLab, or papermill without the runner) gets its profile.

``open_stage`` calls ``interactive_parameters`` when the runner did not inject the parameters:
the parameters cell's ``profile`` is applied by the runner's own merge, a value edited in the
cell wins, and a printable account says where each value came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from laionet.pipeline.params import notebook_file, read_parameters, resolve_parameters
from laionet.pipeline.profiles import load_profile


def committed_defaults(path: Path) -> dict[str, Any] | None:
    """The parameters cell's defaults as committed (git HEAD), or None outside a git checkout
    or for a notebook git does not know.

    "Edited in the cell" means "differs from the committed cell", not "differs from the file on
    disk": JupyterLab autosaves the .py file, so after a minute or two the file holds the user's
    edit and would no longer show it as one."""
    import subprocess
    import tempfile


    try:
        text = subprocess.run(["git", "-C", str(path.resolve().parent), "show", f"HEAD:./{path.name}"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    with tempfile.TemporaryDirectory() as tmp:  # read_parameters reads a file
        copy = Path(tmp) / path.name
        copy.write_text(text)
        try:
            return {k: p.default for k, p in read_parameters(copy).items()}
        except (ValueError, SyntaxError):
            return None


def interactive_parameters(name: str, declared: Mapping[str, Any], cell: Mapping[str, Any]
                           ) -> tuple[dict[str, Any], dict[str, str], str]:
    """(parameters, where each came from, a printable account) for a notebook run by hand.

    ``cell``: the values the parameters cell left in the kernel. Its ``profile`` is applied by
    the runner's own merge (``laionet.pipeline.runner.resolve_parameters``, profiles read by
    ``laionet.pipeline.profiles.load_profile``), exactly as ``./run_all.sh --profile X --only NN`` applies
    it; a value that differs from the committed cell (``committed_defaults``, else the file's)
    is an edit, and wins."""

    baseline = committed_defaults(notebook_file(name)) or {}
    base = {k: baseline.get(k, p.default) for k, p in declared.items()}
    profile_key = str(cell.get("profile") or "demo")
    edits = {k: v for k, v in cell.items() if k != "profile" and v != base[k]}
    profile = load_profile(profile_key)
    full, _, sources = resolve_parameters(profile, name, dict(declared), {}, profile_key, cell=edits)
    runner_full, _, _ = resolve_parameters(profile, name, dict(declared), {}, profile_key)
    for k, src in sources.items():  # not set by the profile: the cell's value (the committed one)
        if src == "default" and k in cell:
            full[k] = cell[k]
    if "profile" in sources:  # the profile is the cell's own choice, never the profile's
        sources["profile"] = "cell edit" if profile_key != base.get("profile") else "default"
    return full, sources, _account(name, profile_key, full, sources, runner_full)


def _account(name: str, profile_key: str, full: Mapping[str, Any], sources: Mapping[str, str],
             runner_full: Mapping[str, Any]) -> str:
    lines = [(f"{name}: parameters of profile {profile_key!r}, as `./run_all.sh --profile "
              f"{profile_key} --only {name[:2]}` gives them (laionet.pipeline.runner's merge; papermill "
              "injected none), with this cell's edits on top:")]
    width = max((len(k) for k in full), default=0)
    defaults = []
    for k, v in full.items():
        src = sources.get(k, "default")
        if src == "default":
            defaults.append(k)
            continue
        note = src
        if src == "cell edit" and k != "profile" and runner_full.get(k) != v:
            note += f" (run_all.sh would give {runner_full.get(k)!r})"
        elif src == "cell edit" and k != "profile":
            note += " (the same as run_all.sh's)"
        lines.append(f"  {k:<{width}} = {v!r:<12}  from {note}")
    if defaults:
        lines.append(f"  from the parameters cell's defaults: {', '.join(defaults)}")
    return "\n".join(lines)
