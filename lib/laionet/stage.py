"""The stage contract: resolve a stage's inputs, fingerprint them, own its manifest.

Two users, one set of rules (the declarations in ``laionet.stages``):

- a notebook opens its stage with ``S = open_stage("02_caption_filtering", globals())`` and gets
  resolved inputs (``S.inputs.matches_dir``), its folders, figure and table saving with the
  profile in the title, its caches and timed steps;
- the runner calls ``plan_stage`` before starting a kernel: a missing input is an error there
  (naming the parameter and the notebook that makes the file), a stage whose parameters,
  inputs, notebook and library are unchanged is skipped, and the runner writes ``manifest.json``
  (resolved parameters, input fingerprints, versions, timings, products).

A changed parameter or input never mixes with old outputs: the stage's declared products are
removed before it runs again. A run that was killed left ``status: running`` with the same
fingerprint, so the rerun keeps what it wrote and resumes.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import json
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import stages as st
from .io import read_json, write_json
from .paths import load_profile, profile_name, project_root, resolve

MANIFEST = "manifest.json"
STATE_DIR = "_stage"          # per-run scratch of the stage object: timings, steps, outputs
OUTPUTS = "outputs.json"      # in STATE_DIR: every figure and table the stage saved (laionet.report)
# Passed by the runner, with the parameters it resolved, to papermill, which injects it into the
# kernel. Papermill injects nothing when run interactively, and by itself leaves no trace in the
# kernel that it did inject, so the marker is how open_stage tells the two apart: without it the
# parameters cell's values are a user's, and open_stage applies their profile (see there).
RUNNER_MARKER = "_params_from_runner"
SMALL_FILE = 64 << 20         # files up to this size are fingerprinted by their bytes
VOLATILE = {MANIFEST, STATE_DIR, "_source"}  # never part of a folder's fingerprint
_VERSIONED = ("laionet", "numpy", "pandas", "pyarrow", "torch", "timm", "open_clip_torch",
              "sentence-transformers", "img2dataset", "nltk")


class MissingInput(FileNotFoundError):
    """An input of a stage that does not exist; the message says what to run or set."""


# ------------------------------------------------------------------------------ fingerprints
def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-able object (parameters, input lists)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of one file: its bytes' hash when small, else its size and modification time."""
    p = Path(path)
    s = p.stat()
    if s.st_size <= SMALL_FILE:
        return {"path": p.name, "size": s.st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}
    return {"path": p.name, "size": s.st_size, "mtime_ns": s.st_mtime_ns}


def path_fingerprint(path: str | os.PathLike) -> str:
    """A file's fingerprint, or a folder's: every file below it (relative name, size, mtime),
    skipping the runner's own bookkeeping (manifest, ``_stage/``, executed notebooks)."""
    p = Path(path)
    if p.is_file():
        return fingerprint(file_fingerprint(p))
    rows = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames[:] = sorted(d for d in dirnames if d not in VOLATILE)
        for f in sorted(filenames):
            if f in VOLATILE or f.endswith((".ipynb", ".html")) or ".tmp" in f:
                continue
            s = os.stat(os.path.join(dirpath, f))
            rows.append((os.path.relpath(os.path.join(dirpath, f), p), s.st_size, s.st_mtime_ns))
    return fingerprint(rows)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------------------ resolution
def notebook_file(name: str) -> Path:
    return project_root() / "notebooks" / f"{name}.py"


def world_of(profile_key: str):
    """The profile's demo world (``WorldPaths``), or None when it lists no ``00_demo_world``."""
    prof = load_profile(profile_key)
    if st.WORLD_STAGE not in (prof.get("notebooks") or []):
        return None
    from .demo.world import WorldPaths

    return WorldPaths(stage_dir(st.WORLD_STAGE, profile_key) / "world")


def stage_dir(name: str, profile_key: str) -> Path:
    """Where a stage of this profile writes: runs/<profile>/<stage>/."""
    return project_root() / "runs" / profile_name(profile_key) / name


def _maker(stage: str) -> str:
    return f"notebook {stage} makes it: run `./run_all.sh --only {stage[:2]}` first"


def _spec_files(value: str) -> list[Path]:
    """Local files named inside a model spec (``demo-tower:/x.safetensors``, ``demo:/models``)."""
    parts = [p for p in str(value).split(":") if p and ("/" in p or p.startswith("~"))]
    return [resolve(p) for p in parts if resolve(p).exists()]  # relative: from the project root


def resolve_input(inp: st.Input, params: Mapping[str, Any], world, profile_key: str,
                  stage: str) -> Any:
    """One input, by the rule in ``laionet.stages``: explicit, upstream product, world, fallback."""
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
        from .demo.layout import locate

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
        specs = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return fingerprint(specs + [path_fingerprint(p) for s in specs for p in _spec_files(s)])
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
                if target.is_dir():
                    shutil.rmtree(target)
                    removed.append(p)
                elif target.exists():
                    target.unlink()
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
                               "(laionet.stages declares them)")
        return self._write(status, wall_s=wall_s)

    def _write(self, status: str, wall_s: float | None = None, error: str = "") -> dict[str, Any]:
        steps = read_json(self.out / STATE_DIR / "timings.json") if (self.out / STATE_DIR / "timings.json").is_file() else {}
        man = {
            "stage": self.name, "status": status, "fingerprint": self.fingerprint,
            "params": self.params, "inputs": {k: str(v) if v is not None else None for k, v in self.inputs.items()},
            "input_fingerprints": self.input_fps,
            "notebook_sha256": _sha(notebook_file(self.name)), "library_sha256": library_digest(),
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


_LIBRARY_DIGEST: list[str] = []


def library_digest() -> str:
    """sha256 of the laionet package's source: a stage's result depends on the library too, so a
    changed library reruns stages (users who do not edit it never notice)."""
    if not _LIBRARY_DIGEST:
        h = hashlib.sha256()
        pkg = Path(__file__).resolve().parent
        for f in sorted(pkg.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".csv", ".json", ".txt") and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
        _LIBRARY_DIGEST.append(h.hexdigest()[:16])
    return _LIBRARY_DIGEST[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


_NOT_FINGERPRINTED = {"profile", "out_dir", "figures_dir"}


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
    key_params = {k: v for k, v in params.items() if k not in _NOT_FINGERPRINTED}
    fp = fingerprint({"stage": name, "params": key_params, "inputs": fps,
                      "notebook": _sha(notebook_file(name)), "library": library_digest()})
    return Plan(name, out, dict(params), inputs, fps, fp, product_paths(spec, params),
                spec.keep_products, read_manifest(out))


# ------------------------------------------------------------------------------ in a notebook
class Timings(dict):
    """``with timings("embed"): ...`` records wall seconds per named step (saved to ``path``)."""

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        self.path = Path(path) if path else None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - t0, 3)
            if self.path is not None:
                write_json(dict(self), self.path)


class Inputs(dict):
    """Resolved inputs by name; also readable as attributes (``S.inputs.matches_dir``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no input {name!r}; this stage has {sorted(self)}") from None


@dataclass
class Step:
    """A cached sub-step of a stage (e.g. stage 02's candidates, reused across a threshold
    sweep): current when the values it uses are unchanged since ``done()``."""

    path: Path
    key: str

    @property
    def current(self) -> bool:
        try:
            return read_json(self.path).get("key") == self.key
        except (OSError, ValueError):
            return False

    def done(self, **info: Any) -> None:
        write_json({"key": self.key, **info}, self.path)


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
            raise KeyError(f"{self.name} declares no cache {kind!r} (laionet.stages: {self.spec.caches})")
        from .embedding_store import safe_name

        return self.cache_root.joinpath(kind, *(safe_name(n) for n in names))

    def step(self, name: str, uses: list[str]) -> Step:
        """A sub-step keyed by the named parameters and inputs (their fingerprints)."""
        key = fingerprint({u: self.input_fps[u] if u in self.input_fps else self.params.get(u) for u in uses})
        return Step(self.out / STATE_DIR / f"step_{name}.json", key)

    def figure(self, fig, name: str, title: str | None = None):
        """Save as PNG + PDF in the run's figure folder, the profile in the title; a stage that
        uses an open_clip model with random weights says so in every title."""
        from .encoders.openclip import random_weight_specs
        from .figures import save_figure

        rnd = random_weight_specs(self.params.values())
        if rnd:
            base = title if title is not None else (fig._suptitle.get_text() if fig._suptitle else "")
            title = f"{base} ({', '.join(rnd)}: random weights)".strip()
        return self._record(name, "figure", save_figure(fig, name, self.figures, self.profile, title=title))

    def table(self, df, name: str, **kw: Any):
        """Save as CSV + Markdown in the run's figure folder."""
        from .figures import save_table

        return self._record(name, "table", save_table(df, name, self.figures, **kw))

    def _record(self, name: str, kind: str, files: list[Path]) -> list[Path]:
        """Note a saved figure or table in ``_stage/outputs.json``: the run's report
        (``laionet.report``) lists it with this stage, its parameters and its executed notebook."""
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
    """The stage object of a notebook: ``S = open_stage("02_caption_filtering", globals())``.

    Reads the notebook's declared parameters from ``namespace``, resolves every input
    (MissingInput names what to run or set), makes the folders and applies the figure style.

    Run by the runner, the namespace holds the values it resolved (``RUNNER_MARKER`` says so).
    Run by hand (JupyterLab, or papermill without the runner), the parameters cell's ``profile``
    is applied as ``./run_all.sh --profile X --only NN`` would apply it, by the runner's own merge
    (``laionet.runner.resolve_parameters``); a value edited in the cell wins; the values are
    written back into ``namespace`` (the notebook's later cells read them) and printed with
    where each came from.
    """
    from .figures import style
    from .params import read_parameters

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


# ------------------------------------------------------------------------------ run by hand
def committed_defaults(path: Path) -> dict[str, Any] | None:
    """The parameters cell's defaults as committed (git HEAD), or None outside a git checkout
    or for a notebook git does not know.

    "Edited in the cell" means "differs from the committed cell", not "differs from the file on
    disk": JupyterLab autosaves the .py file, so after a minute or two the file holds the user's
    edit and would no longer show it as one."""
    import subprocess
    import tempfile

    from .params import read_parameters

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
    the runner's own merge (``laionet.runner.resolve_parameters``, profiles read by
    ``laionet.paths.load_profile``), exactly as ``./run_all.sh --profile X --only NN`` applies
    it; a value that differs from the committed cell (``committed_defaults``, else the file's)
    is an edit, and wins."""
    from .runner import resolve_parameters

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
              f"{profile_key} --only {name[:2]}` gives them (laionet.runner's merge; papermill "
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
