"""Headless notebook runner behind ``run_all.sh``: jupytext text notebook -> papermill -> HTML.

    python -m laionet.runner run [--profile demo] [--only 01,02] [-p NAME VALUE ...]
    python -m laionet.runner sweep NOTEBOOK PARAM VALUE [VALUE ...] [--profile demo]
    python -m laionet.runner list [--profile demo]

A profile (profiles/<name>.yaml) lists the notebooks to run and their parameters:

    notebooks: [00_demo_world, 01_synset_matching, ...]
    parameters: {profile: demo, seed: 0, ...}          # given to every notebook that declares them
    notebook_parameters: {01_synset_matching: {...}}   # given to one notebook

A notebook receives only the parameters its ``parameters`` cell declares. The executed
notebook and its HTML land in the stage's run folder (runs/<profile>/<notebook>/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .paths import load_profile, profile_name, project_root
from .io import write_json

NOTEBOOK_DIR = "notebooks"

# Notebooks whose sweeps get a summary across runs: stem -> (module, table function, figure function).
SWEEP_SUMMARIES = {
    "02_caption_filtering": ("laionet.selection", "summarize_sweep", "plot_sweep"),
}


class RunFailed(RuntimeError):
    pass


def find_notebook(key: str) -> Path:
    """``01`` or ``01_synset_matching`` or a path -> notebooks/01_synset_matching.py."""
    p = Path(key)
    if p.suffix == ".py" and p.is_file():
        return p.resolve()
    nb_dir = project_root() / NOTEBOOK_DIR
    hits = sorted(nb_dir.glob(f"{key}.py")) or sorted(nb_dir.glob(f"{key}_*.py"))
    if len(hits) != 1:
        known = [q.stem for q in sorted(nb_dir.glob("[0-9][0-9]_*.py"))]
        raise SystemExit(f"notebook {key!r}: {'ambiguous' if hits else 'not found'}; known: {known}")
    return hits[0]


def parse_value(text: str) -> Any:
    """CLI values are YAML scalars: 0.8 -> float, true -> bool, [a, b] -> list, abc -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def to_ipynb(py_path: Path, dest: Path):
    """Convert a py:percent notebook to .ipynb with a Python kernel spec."""
    import jupytext

    nb = jupytext.read(py_path)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


def declared_parameters(ipynb: Path) -> dict[str, dict]:
    import papermill as pm

    return pm.inspect_notebook(str(ipynb))


def notebook_parameters(profile: dict, stem: str, declared: dict, overrides: dict) -> dict:
    own = (profile.get("notebook_parameters") or {}).get(stem) or {}
    unknown = sorted(set(own) - set(declared))
    if unknown:  # a typo in a profile would otherwise be dropped without a word
        raise SystemExit(f"profile {profile.get('name')!r}: notebook_parameters.{stem} has "
                         f"{unknown}, which {stem} does not declare; it declares {sorted(declared)}")
    params: dict[str, Any] = {}
    params.update(profile.get("parameters") or {})
    params.update((profile.get("notebook_parameters") or {}).get(stem) or {})
    params.update(overrides)
    return {k: v for k, v in params.items() if k in declared}


def export_html(ipynb: Path) -> Path | None:
    try:
        from nbconvert import HTMLExporter
        import nbformat

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(ipynb, as_version=4))
        html = ipynb.with_suffix(".html")
        html.write_text(body)
        return html
    except Exception as exc:  # the HTML is a convenience; never hide the real result
        print(f"[run_all] could not export HTML for {ipynb}: {exc}", file=sys.stderr)
        return None


def failed_cell(ipynb: Path) -> str:
    """Describe the first cell with an error output in an executed notebook.

    Cells are numbered as in the source notebook (code cells only, papermill's injected
    parameters cell not counted), so the number points at the .py file's cell.
    """
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"
                  and "injected-parameters" not in c.metadata.get("tags", [])]
    for i, cell in enumerate(code_cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = (cell.source.strip().splitlines() or [""])[0]
                return (f"code cell {i} (starting {first!r}): "
                        f"{out.get('ename')}: {out.get('evalue')}")
    return "no cell recorded an error (the kernel may have died: out of memory?)"


def execute(py_path: Path, profile_key: str, overrides: dict, out_dir: Path | None = None,
            figures_dir: Path | None = None, log_output: bool = False) -> Path:
    """Run one notebook; returns the executed .ipynb. Raises RunFailed with the failing cell."""
    import papermill as pm

    profile = load_profile(profile_key)
    name = profile_name(profile_key)
    stem = py_path.stem
    root = project_root()
    out_dir = out_dir or root / "runs" / name / stem
    src = to_ipynb(py_path, out_dir / "_source" / f"{stem}.ipynb")
    declared = declared_parameters(src)
    extra = dict(overrides)
    extra.setdefault("profile", str(profile_key))
    if out_dir != root / "runs" / name / stem:
        extra["out_dir"] = str(out_dir)
    if figures_dir is not None:
        extra["figures_dir"] = str(figures_dir)
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise SystemExit(f"{stem}: unknown parameter(s) {unknown}; it declares {sorted(declared)}")
    params = notebook_parameters(profile, stem, declared, extra)
    dest = out_dir / f"{stem}.ipynb"
    print(f"[run_all] {stem}: profile={name} params={json.dumps(params, default=str)}", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dest), parameters=params, cwd=str(root),
                            kernel_name="python3", progress_bar=sys.stderr.isatty(),
                            log_output=log_output, request_save_on_cell_execute=True)
    except Exception as exc:
        export_html(dest) if dest.exists() else None
        where = failed_cell(dest) if dest.exists() else str(exc)
        raise RunFailed(f"{stem} failed after {time.perf_counter() - t0:.0f}s in {where}\n"
                        f"  executed notebook: {dest}\n"
                        f"  HTML:              {dest.with_suffix('.html')}") from exc
    export_html(dest)
    print(f"[run_all] {stem}: done in {time.perf_counter() - t0:.1f}s -> {dest}", flush=True)
    return dest


def cmd_run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    order = list(profile.get("notebooks") or [])
    if not order:
        order = [p.stem for p in sorted((project_root() / NOTEBOOK_DIR).glob("[0-9][0-9]_*.py"))]
    if args.only:
        wanted = [k.strip() for k in args.only.split(",") if k.strip()]
        order = [find_notebook(k).stem for k in wanted]
    overrides = {k: parse_value(v) for k, v in args.param}
    paths = [find_notebook(key) for key in order]
    if overrides:  # an override nobody declares is a typo, not something to drop silently
        declared = set().union(*(_declared(p, args.profile) for p in paths))
        unknown = sorted(set(overrides) - declared)
        if unknown:
            raise SystemExit(f"unknown parameter(s) {unknown}: no selected notebook declares them "
                             f"(see `python -m laionet.runner list`)")
    timings: dict[str, float] = {}
    for path in paths:
        t0 = time.perf_counter()
        try:
            execute(path, args.profile,
                    {k: v for k, v in overrides.items() if k in _declared(path, args.profile)},
                    log_output=args.verbose)
        except RunFailed as exc:
            print(f"[run_all] FAILED: {exc}", file=sys.stderr)
            return 1
        timings[path.stem] = round(time.perf_counter() - t0, 1)
    name = profile_name(args.profile)
    write_json({"profile": name, "timings_s": timings, "total_s": round(sum(timings.values()), 1)},
               project_root() / "runs" / name / "run_all_timings.json")
    print(f"[run_all] all {len(timings)} notebook(s) done: "
          + ", ".join(f"{k} {v}s" for k, v in timings.items()))
    return 0


def _declared(path: Path, profile_key: str) -> set[str]:
    """Names of the parameters a notebook's ``parameters`` cell declares."""
    name = profile_name(profile_key)
    src = to_ipynb(path, project_root() / "runs" / name / path.stem / "_source" / f"{path.stem}.ipynb")
    return set(declared_parameters(src))


def cmd_sweep(args: argparse.Namespace) -> int:
    path = find_notebook(args.notebook)
    name = profile_name(args.profile)
    base = project_root() / "runs" / name / "sweeps" / path.stem / args.param
    fig_base = project_root() / "figures" / name / "sweeps" / path.stem / args.param
    overrides = {k: parse_value(v) for k, v in args.param_extra}
    runs = []
    for raw in args.values:
        value = parse_value(raw)
        label = f"{args.param}={raw}"
        out = base / label
        try:
            execute(path, args.profile, {**overrides, args.param: value}, out_dir=out,
                    figures_dir=fig_base / label, log_output=args.verbose)
        except RunFailed as exc:
            print(f"[run_all] FAILED: {exc}", file=sys.stderr)
            return 1
        runs.append({"value": value, "out_dir": str(out), "figures_dir": str(fig_base / label)})
    index = write_json({"notebook": path.stem, "param": args.param, "profile": name, "runs": runs},
                       base / "sweep.json")
    print(f"[run_all] sweep done: {len(runs)} run(s); index at {index}")
    summarize_sweep(path.stem, args.param, index, fig_base, name)
    return 0


def summarize_sweep(stem: str, param: str, index: Path, fig_dir: Path, profile: str) -> None:
    """The across-runs table and figure of a sweep, for notebooks that define one."""
    if stem not in SWEEP_SUMMARIES:
        return
    import importlib

    from .figures import save_figure, save_table

    module, table_fn, figure_fn = SWEEP_SUMMARIES[stem]
    mod = importlib.import_module(module)
    table = getattr(mod, table_fn)(index)
    save_table(table.drop(columns=["out_dir"], errors="ignore"), "sweep_summary", fig_dir)
    save_figure(getattr(mod, figure_fn)(table, param), "sweep_summary", fig_dir, profile)
    print(f"[run_all] sweep summary: {fig_dir / 'sweep_summary.png'}")


def cmd_list(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    for key in profile.get("notebooks") or []:
        path = find_notebook(key)
        src = to_ipynb(path, project_root() / "runs" / profile_name(args.profile) / path.stem
                       / "_source" / f"{path.stem}.ipynb")
        print(path.stem)
        for pname, info in declared_parameters(src).items():
            print(f"    {pname}: {info.get('inferred_type_name')} = {info.get('default')}"
                  f"  {info.get('help') or ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, dest):
        p.add_argument("--profile", default="demo", help="profile name or YAML path (default demo)")
        p.add_argument("-p", "--param", dest=dest,
                       nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="override a notebook parameter (YAML value), repeatable")
        p.add_argument("-v", "--verbose", action="store_true", help="stream cell outputs")

    run = sub.add_parser("run", help="run the profile's notebooks in order")
    common(run, "param")
    run.add_argument("--only", default="", help="comma-separated notebooks, e.g. 01,02")
    sw = sub.add_parser("sweep", help="run one notebook for several values of one parameter")
    sw.add_argument("notebook")
    sw.add_argument("param")
    sw.add_argument("values", nargs="+")
    common(sw, "param_extra")
    ls = sub.add_parser("list", help="list the profile's notebooks and their parameters")
    ls.add_argument("--profile", default="demo")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "sweep": cmd_sweep, "list": cmd_list}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
