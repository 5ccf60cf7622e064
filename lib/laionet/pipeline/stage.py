"""The stage contract: resolve a stage's inputs, fingerprint them, own its manifest.

A notebook opens its stage with ``S = open_stage("02_caption_filtering", globals())``: resolved
inputs (``S.inputs.matches_dir``), folders, figures and tables saved with the profile in the
title, caches, timed and cached sub-steps. The runner calls ``plan_stage`` before a kernel
starts: a missing input is an error naming the notebook that makes it; a stage whose manifest
holds the same fingerprint (parameters that change results, inputs' content, notebook, library)
is skipped; otherwise its declared products are removed first, unless a killed run left
``status: running`` under the same fingerprint (the rerun resumes).
"""

import glob as globmod
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laionet.demo.layout import locate
from laionet.demo.world import WorldPaths
from laionet.jobs.embedding_store import safe_name
from laionet.models.openclip import random_weight_specs
from laionet.pipeline import stages as st
from laionet.pipeline.interactive import interactive_parameters
from laionet.pipeline.params import notebook_file, read_parameters
from laionet.pipeline.profiles import load_profile, profile_name
from laionet.plots.style import save_figure, save_table, style
from laionet.util.files import read_json, write_json
from laionet.util.fingerprint import (Marker, fingerprint, library_digest, path_fingerprint,
                                      spec_fingerprint, versions)
from laionet.util.paths import project_root, resolve
from laionet.util.timings import Timings

MANIFEST = "manifest.json"
STATE_DIR = "_stage"          # per-run scratch of the stage object: timings, steps, outputs
OUTPUTS = "outputs.json"      # in STATE_DIR: every figure and table the stage saved (laionet.pipeline.report)
# Passed by the runner, with the parameters it resolved, to papermill, which injects it into the
# kernel. Papermill injects nothing when run interactively, and by itself leaves no trace in the
# kernel that it did inject, so the marker is how open_stage tells the two apart: without it the
# parameters cell's values are a user's, and open_stage applies their profile (see there).
RUNNER_MARKER = "_params_from_runner"


class MissingInput(FileNotFoundError):
    """An input of a stage that does not exist; the message says what to run or set."""


# ------------------------------------------------------------------------------ resolution
def world_of(profile_key: str):
    """The profile's demo world (``WorldPaths``), or None when it lists no ``00_demo_world``."""
    prof = load_profile(profile_key)
    if st.WORLD_STAGE not in (prof.get("notebooks") or []):
        return None
    return WorldPaths(stage_dir(st.WORLD_STAGE, profile_key) / "world")


def stage_dir(name: str, profile_key: str) -> Path:
    """Where a stage of this profile writes: runs/<profile>/<stage>/."""
    return project_root() / "runs" / profile_name(profile_key) / name


def _maker(stage: str) -> str:
    return f"notebook {stage} makes it: run `./run_all.sh --only {stage[:2]}` first"


def resolve_input(inp: st.Input, params: Mapping[str, Any], world, profile_key: str,
                  stage: str) -> Any:
    """One input, by the rule in ``laionet.pipeline.stages``: explicit, upstream product, world, fallback."""
    explicit = params.get(inp.name) if inp.param else None
    if inp.unless and params.get(inp.unless):
        return explicit or None
    where = ""
    if explicit not in (None, "", []):
        value, where = explicit, f"parameter {inp.name}"
    elif inp.upstream:
        value = stage_dir(inp.upstream, profile_key) / inp.product if inp.product else stage_dir(inp.upstream, profile_key)
        where = f"the product of {inp.upstream}"
        if not Path(value).exists() and not inp.optional:
            raise MissingInput(
                f"{stage} needs {inp.name}: {value} does not exist; {_maker(inp.upstream)}, "
                f"or set {inp.name} to your own file.")
    elif inp.world and world is not None:
        if not world.world_json.is_file():
            raise MissingInput(f"{stage} needs {inp.name} from the demo world, which is not built "
                               f"yet ({world.root}); notebook {st.WORLD_STAGE} makes it: run "
                               "`./run_all.sh --only 00` first")

        value, where = locate(world, inp.world), f"the demo world ({world.root})"
        if value is None and not inp.optional:
            raise MissingInput(f"{stage} needs {inp.name}, which the demo world at {world.root} lacks: "
                               f"rerun {st.WORLD_STAGE} (models trained), or set {inp.name}")
    elif inp.fallback is not None:
        return inp.fallback
    elif inp.optional:
        return None
    else:
        raise MissingInput(
            f"{stage} needs {inp.name}, which is not set and this profile has no demo world: "
            f"set {inp.name} in your profile (or `-p {stage[:2]}.{inp.name} VALUE`).")
    if value is None:
        return None
    if inp.kind == "specs":  # a list parameter of model specs; the demo world gives one
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if inp.kind in ("spec",) or (inp.kind == "classes" and value == "imagenet1k"):
        return value
    if inp.kind == "glob":
        pattern = str(resolve(value))
        if not globmod.glob(pattern):
            raise MissingInput(f"{stage}: {inp.name}={pattern!r} (from {where}) matches no file: "
                               f"point {inp.name} at your LAION parquet parts")
        return pattern
    path = resolve(value)
    if not path.exists():
        if inp.optional and not where.startswith("parameter"):
            return None
        made = f"; {_maker(inp.upstream)}" if inp.upstream and where.startswith("the product") else ""
        raise MissingInput(f"{stage} needs {inp.name}: {path} (from {where}) does not exist{made}. "
                           f"Set {inp.name} to the right path.")
    return str(path) if inp.kind == "classes" else path


def resolve_inputs(name: str, params: Mapping[str, Any], profile_key: str,
                   world: Any = ...) -> dict[str, Any]:
    """Every input of a stage (``world``: the profile's world when already known)."""
    world = world_of(profile_key) if world is ... else world
    return {i.name: resolve_input(i, params, world, profile_key, name) for i in st.spec(name).inputs}


def input_fingerprints(name: str, inputs: Mapping[str, Any], profile_key: str) -> dict[str, str | None]:
    return {i.name: input_fingerprint(i, inputs[i.name], profile_key) for i in st.spec(name).inputs}


def input_fingerprint(inp: st.Input, value: Any, profile_key: str) -> str | None:
    if value is None:
        return None
    if inp.kind in ("spec", "specs"):
        return spec_fingerprint(value)
    if inp.kind == "classes" and value == "imagenet1k":
        return fingerprint(value)
    if inp.kind == "glob":
        return fingerprint([path_fingerprint(p) for p in sorted(globmod.glob(value))])
    path = Path(value)
    if inp.upstream and not inp.product:  # an upstream stage's folder: its products only
        man = read_manifest(path)
        if man.get("products"):
            return fingerprint(man["products"])
    return path_fingerprint(path)


# ------------------------------------------------------------------------------ manifests
def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    try:
        return read_json(Path(out_dir) / MANIFEST)
    except (OSError, ValueError):
        return {}


def product_paths(spec: st.StageSpec, params: Mapping[str, Any]) -> list[str]:
    return [p.format(**params) for p in spec.products]


@dataclass
class Plan:
    """What the runner knows of one stage before it runs: resolved inputs and the fingerprint."""

    name: str
    out: Path
    params: dict[str, Any]
    inputs: dict[str, Any]
    input_fps: dict[str, str | None]
    fingerprint: str
    products: list[str]
    keep_products: bool = False
    recorded: dict[str, Any] = field(default_factory=dict)

    def current(self) -> bool:
        """Same fingerprint, finished, every product still there."""
        r = self.recorded
        return (r.get("status") == "done" and r.get("fingerprint") == self.fingerprint
                and all((self.out / p).exists() for p in self.products))

    def begin(self) -> list[str]:
        """Before running: remove products made under another fingerprint (a kill under the same
        fingerprint keeps them, so the stage resumes), then record ``status: running``."""
        removed = []
        if self.recorded and self.recorded.get("fingerprint") != self.fingerprint and not self.keep_products:
            for p in self.products:
                target = self.out / p
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                    removed.append(p)
            (self.out / STATE_DIR / "timings.json").unlink(missing_ok=True)
        # the record of saved figures and tables is this run's alone (the report reads it)
        (self.out / STATE_DIR / OUTPUTS).unlink(missing_ok=True)
        self._write("running")
        return removed

    def finish(self, wall_s: float, status: str = "done") -> dict[str, Any]:
        missing = [p for p in self.products if not (self.out / p).exists()]
        if status == "done" and missing:
            self._write("failed", wall_s=wall_s, error=f"declared products not made: {missing}")
            raise RuntimeError(f"{self.name} finished without making its declared products {missing} "
                               "(laionet.pipeline.stages declares them)")
        return self._write(status, wall_s=wall_s)

    def _write(self, status: str, wall_s: float | None = None, error: str = "") -> dict[str, Any]:
        steps = read_json(self.out / STATE_DIR / "timings.json") if (self.out / STATE_DIR / "timings.json").is_file() else {}
        man = {
            "stage": self.name, "status": status, "fingerprint": self.fingerprint,
            "params": self.params, "inputs": {k: str(v) if v is not None else None for k, v in self.inputs.items()},
            "input_fingerprints": self.input_fps,
            "notebook": path_fingerprint(notebook_file(self.name)), "library": library_digest(),
            "products": {p: path_fingerprint(self.out / p) for p in self.products
                         if status == "done" and (self.out / p).exists()},
            "timings_s": {"total": round(wall_s, 1) if wall_s is not None else None, **steps},
            "versions": versions(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if error:
            man["error"] = error
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(man, self.out / MANIFEST)
        return man


_NOT_FINGERPRINTED = {"profile", "out_dir", "figures_dir"}
# how the work is spread, never what it makes: a change reuses every product
EXECUTION_ONLY = {"n_workers", "max_models", "processes_count", "thread_count", "distributor",
                  "download_processes", "ocr_batch_size"}


def plan_stage(name: str, params: Mapping[str, Any], profile_key: str,
               out_dir: str | os.PathLike | None = None) -> Plan:
    """Resolve a stage's inputs (MissingInput when one is absent) and fingerprint the run."""
    spec = st.spec(name)
    out = Path(out_dir) if out_dir else stage_dir(name, profile_key)
    inputs = resolve_inputs(name, params, profile_key)
    fps = input_fingerprints(name, inputs, profile_key)
    upstream_state = {i.upstream: read_manifest(stage_dir(i.upstream, profile_key)).get("status")
                      for i in spec.inputs if i.upstream and inputs.get(i.name) is not None
                      and not (params.get(i.name) if i.param else None)}
    unfinished = sorted(k for k, v in upstream_state.items() if v in ("running", "failed"))
    if unfinished:
        raise MissingInput(f"{name} reads the products of {unfinished}, which did not finish "
                           f"(killed or failed): rerun {', '.join(unfinished)} first")
    key_params = {k: v for k, v in params.items() if k not in _NOT_FINGERPRINTED | EXECUTION_ONLY}
    fp = fingerprint({"stage": name, "params": key_params, "inputs": fps,
                      "notebook": path_fingerprint(notebook_file(name)), "library": library_digest()})
    return Plan(name, out, dict(params), inputs, fps, fp, product_paths(spec, params),
                spec.keep_products, read_manifest(out))


# ------------------------------------------------------------------------------ in a notebook
class Inputs(dict):
    """Resolved inputs by name; also readable as attributes (``S.inputs.matches_dir``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no input {name!r}; this stage has {sorted(self)}") from None


@dataclass
class Stage:
    """One stage as a notebook sees it (``open_stage``)."""

    name: str
    spec: st.StageSpec
    profile: str           # short name, for titles and folders
    profile_key: str       # as given (a name or a YAML path)
    params: dict[str, Any]
    inputs: Inputs
    world: Any             # laionet.demo.WorldPaths, or None on real data
    out: Path
    figures: Path
    timings: Timings
    resolved_by: str = "runner"   # who resolved the parameters: runner | interactive (open_stage)
    sources: dict[str, str] = field(default_factory=dict)  # where each value came from (interactive)
    _fps: dict[str, str | None] | None = field(default=None, repr=False)

    @property
    def input_fps(self) -> dict[str, str | None]:
        """Input fingerprints, computed on first use (the runner already checked currency; only
        cached sub-steps need them in the kernel)."""
        if self._fps is None:
            self._fps = input_fingerprints(self.name, self.inputs, self.profile_key)
        return self._fps

    @property
    def cache_root(self) -> Path:
        """runs/<profile>/cache/: shared by every stage and sweep of the profile."""
        return project_root() / "runs" / self.profile / "cache"

    def cache_dir(self, kind: str, *names: str) -> Path:
        """A shared cache folder, one name per kind, dataset and encoder wherever it is used."""
        if kind not in self.spec.caches:
            raise KeyError(f"{self.name} declares no cache {kind!r} (laionet.pipeline.stages: {self.spec.caches})")
        return self.cache_root.joinpath(kind, *(safe_name(n) for n in names))

    def step(self, name: str, uses: list[str]) -> Marker:
        """A cached sub-step (stage 06's accuracy on the releases), keyed by the named parameters
        and inputs (their fingerprints): ``.current()`` until one of them changes."""
        key = fingerprint({u: self.input_fps[u] if u in self.input_fps else self.params.get(u) for u in uses})
        return Marker(self.out / STATE_DIR / f"step_{name}.json", key)

    def figure(self, fig, name: str, title: str | None = None):
        """Save as PNG + PDF, the profile in the title (and any open_clip model with random
        weights: every title says so)."""
        rnd = random_weight_specs(self.params.values())
        if rnd:
            base = title if title is not None else (fig._suptitle.get_text() if fig._suptitle else "")
            title = f"{base} ({', '.join(rnd)}: random weights)".strip()
        return self._record(name, "figure", save_figure(fig, name, self.figures, self.profile, title=title))

    def table(self, df, name: str, **kw: Any):
        """Save as CSV + Markdown in the run's figure folder."""
        return self._record(name, "table", save_table(df, name, self.figures, **kw))

    def _record(self, name: str, kind: str, files: list[Path]) -> list[Path]:
        """Note a saved figure or table in ``_stage/outputs.json`` (for the run's report)."""
        path = self.out / STATE_DIR / OUTPUTS
        try:
            outputs = [o for o in read_json(path)["outputs"]  # a figure and a table may
                       if (o.get("name"), o.get("kind")) != (name, kind)]  # share a name
        except (OSError, ValueError, KeyError, TypeError):
            outputs = []
        outputs.append({  # in the order the notebook saves them: the order of its story
            "name": name, "kind": kind, "figures_dir": str(self.figures),
            "files": [os.path.relpath(f, self.figures) for f in files],
            "by": self.resolved_by, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "params": {k: v for k, v in self.params.items() if k not in _NOT_FINGERPRINTED}})
        write_json({"stage": self.name, "outputs": outputs}, path)
        return files

    def __repr__(self) -> str:
        lines = [f"stage {self.name} (profile {self.profile}): {self.spec.question}",
                 f"  out: {self.out}", f"  figures: {self.figures}",
                 f"  world: {self.world.root if self.world else 'none (real data)'}"]
        lines += [f"  {k}: {v}" for k, v in self.inputs.items()]
        return "\n".join(lines)


def open_stage(name: str, namespace: Mapping[str, Any]) -> Stage:
    """The stage object of a notebook: its declared parameters read from ``namespace``, every
    input resolved, the folders made, the figure style applied. Run by hand (no
    ``RUNNER_MARKER``), the cell's ``profile`` is applied as ``./run_all.sh --profile X --only NN``
    would apply it, with the cell's values as the defaults (``laionet.pipeline.interactive``); the
    values are written back into ``namespace`` and printed with where each came from."""

    spec = st.spec(name)
    declared = read_parameters(notebook_file(name))
    params = {k: namespace[k] for k in declared if k in namespace}
    resolved_by, sources = "runner", {}
    if not namespace.get(RUNNER_MARKER):
        resolved_by = "interactive"
        params, sources, report = interactive_parameters(name, declared, params)
        if hasattr(namespace, "__setitem__"):
            namespace.update(params)  # type: ignore[attr-defined]
        print(report)
    profile_key = str(params.get("profile") or "demo")
    pname = profile_name(profile_key)
    out = resolve(params["out_dir"]) if params.get("out_dir") else stage_dir(name, profile_key)
    figs = resolve(params["figures_dir"]) if params.get("figures_dir") else project_root() / "figures" / pname
    out.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    world = world_of(profile_key)
    inputs = resolve_inputs(name, params, profile_key, world)
    style()
    return Stage(name, spec, pname, profile_key, params, Inputs(inputs), world,
                 out, figs, Timings(out / STATE_DIR / "timings.json"), resolved_by, sources)


