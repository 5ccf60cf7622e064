"""A notebook run by hand (JupyterLab, or papermill without the runner) gets its profile.

The rule: run by hand, a notebook gets what ``./run_all.sh --profile P --only NN`` would give it,
with the parameters cell's values in place of the notebook's defaults (P: the cell's ``profile``).
That is papermill's own rule, applied by ``open_stage`` instead of papermill: the cell holds the
defaults, the profile's values go over them. So a value typed into the cell is used unless P sets
that parameter; the printed account then says the cell's value is not used. To change a value P
sets, use a profile of your own (``extends: P``, then ``profile = "my.yaml"`` in the cell).
"""

from collections.abc import Mapping
from typing import Any

from laionet.pipeline.params import Param, resolve_parameters
from laionet.pipeline.profiles import load_profile


def interactive_parameters(name: str, declared: Mapping[str, Param], cell: Mapping[str, Any]
                           ) -> tuple[dict[str, Any], dict[str, str], str]:
    """(parameters, where each came from, a printable account) for a notebook run by hand;
    ``cell``: the values the parameters cell left in the kernel."""
    profile_key = str(cell.get("profile") or "demo")
    full, _, sources = resolve_parameters(load_profile(profile_key), name, dict(declared), {},
                                          profile_key, cell=dict(cell))
    if "profile" in sources:  # the profile is the cell's own choice
        edited = profile_key != declared["profile"].default
        sources["profile"] = "cell edit" if edited else "default"
    lines = [(f"{name}: parameters of profile {profile_key!r}, as `./run_all.sh --profile "
              f"{profile_key} --only {name[:2]}` gives them (laionet.pipeline.params' merge, the "
              "parameters cell's values as the defaults; papermill injected none):")]
    width = max((len(k) for k in full), default=0)
    for k, v in full.items():
        src = sources[k]
        if src.startswith("profile ") and cell.get(k, v) not in (v, declared[k].default):
            src += f" (the cell's {cell[k]!r} is not used: the profile sets {k})"
        if src != "default":
            lines.append(f"  {k:<{width}} = {v!r:<12}  from {src}")
    defaults = [k for k, src in sources.items() if src == "default"]
    if defaults:
        lines.append(f"  from the parameters cell's defaults: {', '.join(defaults)}")
    return full, sources, "\n".join(lines)
