"""Headless notebook runner behind ``run_all.sh``: jupytext text notebook -> papermill -> HTML.

    python -m laionet.pipeline.runner run [--profile demo] [--only 01,02] [-p [NN.]NAME VALUE ...]
                                          [--force] [--no-wait]
    python -m laionet.pipeline.runner sweep NOTEBOOK PARAM VALUE [VALUE ...] [--profile demo]
    python -m laionet.pipeline.runner list [--profile demo]

A profile (profiles/<name>.yaml: ``notebooks``, ``parameters`` for every notebook that declares
them, ``notebook_parameters`` for one) gives each notebook the parameters its ``parameters`` cell
declares; every key of a profile and every ``-p`` must reach one (a typo is an error), with one
meaning (else scope it: ``-p 02.threshold 0.8``). Stages whose parameters, inputs, notebook and
library are unchanged are skipped. The executed notebook and its HTML land in
runs/<profile>/<notebook>/; the report page, figures/<profile>/index.html, is printed last. One
run or sweep of a profile at a time: a second one says who holds runs/<profile>/.lock and waits
for it (``--no-wait``: exits with status 3 instead).
"""

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jupytext
import yaml
from filelock import FileLock, Timeout

from laionet.jobs import processes as tether
from laionet.pipeline import report, sweeps
from laionet.pipeline.params import (ParameterError, check_overrides, check_profile,
                                     notebook_parameters, read_parameters)
from laionet.pipeline.profiles import ProfileError, ProfileNotFound, load_profile, profile_name
from laionet.pipeline.stage import RUNNER_MARKER, MissingInput, plan_stage
from laionet.pipeline.stages import spec
from laionet.plots.style import save_figure, save_table
from laionet.util.files import read_json, remove_stale_temp_files, write_json
from laionet.util.paths import project_root, resolve

ALREADY_RUNNING = 3  # exit status of `--no-wait` when another run of the profile holds the lock


def say(message: str, **kw) -> None:
    print(f"[run_all] {message}", flush=True, **kw)


class RunFailed(RuntimeError):
    pass


class AlreadyRunning(RuntimeError):
    """Another run or sweep of the profile holds its lock (and ``--no-wait`` was given)."""


# papermill warns about every parameter the cell does not declare; RUNNER_MARKER is meant
logging.getLogger("papermill").addFilter(lambda record: RUNNER_MARKER not in record.getMessage())


def find_notebook(key: str) -> Path:
    """``01`` or ``01_synset_matching`` or a path -> notebooks/01_synset_matching.py."""
    p = Path(key)
    if p.suffix == ".py" and p.is_file():
        return p.resolve()
    nb_dir = project_root() / "notebooks"
    hits = sorted(nb_dir.glob(f"{key}.py")) or sorted(nb_dir.glob(f"{key}_*.py"))
    if len(hits) != 1:
        known = [q.stem for q in sorted(nb_dir.glob("[0-9][0-9]_*.py"))]
        raise SystemExit(f"notebook {key!r}: {'ambiguous' if hits else 'not found'}; "
                         f"known: {known}")
    return hits[0]


def parse_value(text: str) -> Any:
    """CLI values are YAML scalars: 0.8 -> float, true -> bool, [a, b] -> list, abc -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def to_ipynb(py_path: Path, dest: Path):
    """Convert a py:percent notebook to .ipynb with a Python kernel spec."""
    nb = jupytext.read(py_path)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


@contextlib.contextmanager
def profile_lock(name: str, command: str, wait: bool = True):
    """Hold runs/<profile>/.lock (``filelock``: an OS lock, gone with its process, even on
    SIGKILL) for a run or sweep; runs/<profile>/.lock.json says who holds it. Held by another
    process: say who, then wait for it, or (``wait=False``) raise AlreadyRunning."""
    folder = project_root() / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    lock, info = FileLock(folder / ".lock"), folder / ".lock.json"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            h = read_json(info)
            who = f"pid {h['pid']}, `{h['command']}`, since {h['since']}"
        except (OSError, ValueError, KeyError):
            who = "a process that has not said who it is yet"
        if not wait:
            raise AlreadyRunning(f"profile {name!r} is already running ({who}); without "
                                 "--no-wait this run waits for it") from None
        say(f"profile {name!r} is already running ({who}); waiting for it to finish (Ctrl-C "
            "stops waiting)")
        lock.acquire()
    try:
        write_json({"pid": os.getpid(), "command": command,
                    "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, info)
        yield
    finally:
        info.unlink(missing_ok=True)
        lock.release()


def export_html(ipynb: Path) -> Path | None:
    try:
        from nbconvert import HTMLExporter

        html = ipynb.with_suffix(".html")
        html.write_text(HTMLExporter().from_filename(str(ipynb))[0])
        return html
    except Exception as exc:  # noqa: BLE001 (the HTML is a convenience; never hide the result)
        say(f"could not export HTML for {ipynb}: {exc}", file=sys.stderr)
        return None


def failed_cell(ipynb: Path) -> str:
    """The first cell with an error output in an executed notebook, numbered as in the .py file
    (code cells only, papermill's injected parameters cell not counted)."""
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


def _stop_kernels_quietly() -> None:
    """Kill the running kernel(s) with their process groups, and keep the event loop quiet about
    the cell that will never finish (no "Task was destroyed but it is pending" at exit)."""
    import asyncio
    import warnings

    tether.kill_kernels()
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        asyncio.get_event_loop_policy().get_event_loop().set_exception_handler(lambda *_: None)


def execute(py_path: Path, profile_key: str, overrides: dict, log_output: bool = False,
            force: bool = False) -> Path | None:
    """Run one notebook unless it is current; returns the executed .ipynb (None: skipped).
    Parameters and inputs are checked before any kernel starts; the stage's manifest says
    ``running`` before, ``done`` (with products and timings) or ``failed`` after. Raises
    RunFailed naming the failing cell."""
    profile, name, stem = load_profile(profile_key), profile_name(profile_key), py_path.stem
    root, decl = project_root(), read_parameters(py_path)
    try:  # the overrides are checked by the caller (check_overrides)
        full, params = notebook_parameters(profile, stem, decl, overrides, profile_key)
        # `-p 04.out_dir X`, a profile's or a sweep's: the folder the notebook uses
        out_dir = resolve(full["out_dir"]) if full.get("out_dir") else root / "runs" / name / stem
        plan = plan_stage(stem, full, profile_key, out_dir)
    except (ParameterError, MissingInput) as exc:
        raise RunFailed(f"{stem} not started: {exc}") from None
    if plan.current() and not force:
        when = plan.recorded.get("written_at", "?")
        say(f"{stem}: up to date (parameters, inputs, notebook and library unchanged since "
            f"{when}); skipped. --force reruns it")
        return None
    if stale := remove_stale_temp_files(out_dir):  # a hard kill between write and rename
        say(f"{stem}: removed {len(stale)} temporary file(s) a killed run left in {out_dir}")
    if removed := plan.begin():
        say(f"{stem}: parameters or inputs changed; removed the old {removed}")
    import papermill as pm  # imported only when a kernel will run (seconds)

    src = to_ipynb(py_path, out_dir / "_source" / f"{stem}.ipynb")
    dest = out_dir / f"{stem}.ipynb"
    work = out_dir / f"{stem}.running.ipynb"  # the last good executed notebook stays until success
    say(f"{stem}: profile={name} params={json.dumps(params, default=str)}")
    t0 = time.perf_counter()
    try:
        # the kernel (and what it starts) dies with this process, even on SIGKILL
        # (laionet.jobs.processes); RUNNER_MARKER tells open_stage these values are the runner's
        pm.execute_notebook(str(src), str(work), parameters={**params, RUNNER_MARKER: True},
                            cwd=str(root), kernel_name="python3", progress_bar=sys.stderr.isatty(),
                            log_output=log_output, request_save_on_cell_execute=True,
                            kernel_manager_class=tether.kernel_manager_class())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (main): stop the kernel now, quietly; the
        _stop_kernels_quietly()  # manifest stays `running`, so a rerun resumes
        raise
    except Exception as exc:
        plan.finish(time.perf_counter() - t0, status="failed")
        failed = out_dir / f"{stem}.failed.ipynb"
        if work.exists():
            work.replace(failed)
            export_html(failed)
        where = failed_cell(failed) if failed.exists() else str(exc)
        raise RunFailed(f"{stem} failed after {time.perf_counter() - t0:.0f}s in {where}\n"
                        f"  executed notebook: {failed}\n"
                        f"  HTML:              {failed.with_suffix('.html')}") from exc
    work.replace(dest)
    for suffix in ("ipynb", "html"):
        (out_dir / f"{stem}.failed.{suffix}").unlink(missing_ok=True)
    export_html(dest)
    try:
        plan.finish(time.perf_counter() - t0)
    except RuntimeError as exc:
        raise RunFailed(str(exc)) from None
    say(f"{stem}: done in {time.perf_counter() - t0:.1f}s -> {dest}")
    return dest


def _selected(profile: dict, only: str) -> list[Path]:
    order = [k.strip() for k in only.split(",") if k.strip()] or profile.get("notebooks") or []
    if not order:
        order = [p.stem for p in sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.py"))]
    return [find_notebook(key) for key in order]


def _checked(profile: dict, paths: list[Path], overrides: dict) -> None:
    """Check the profile and the overrides before anything runs."""
    check_profile(profile, {p.stem: read_parameters(p) for p in _selected(profile, "")})
    check_overrides(overrides, {p.stem: read_parameters(p) for p in paths})


def report_page(profile_key: str, sweep: tuple[Path, Path] | None = None) -> Path | None:
    """Write the run's (or a sweep's) report page (``laionet.pipeline.report``) and print its
    path as the last line. Like the HTML export, a convenience: a failure is said, never fatal."""
    try:
        page = report.write_sweep_report(*sweep) if sweep else report.write_run_report(profile_key)
    except Exception as exc:  # noqa: BLE001 (said, not fatal: the run's results are made)
        say(f"could not write the report page: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    say(f"report: {page}")
    return page


def cmd_run(args: argparse.Namespace) -> int:
    profile, overrides = load_profile(args.profile), {k: parse_value(v) for k, v in args.param}
    paths = _selected(profile, args.only)
    _checked(profile, paths, overrides)
    with profile_lock(profile_name(args.profile), args.command, wait=not args.no_wait):
        timings: dict[str, float] = {}
        for path in paths:
            t0 = time.perf_counter()
            try:
                execute(path, args.profile, overrides, log_output=args.verbose, force=args.force)
            except RunFailed as exc:
                say(f"FAILED: {exc}", file=sys.stderr)
                report_page(args.profile)  # what did finish, and the failed notebook's HTML
                return 1
            timings[path.stem] = round(time.perf_counter() - t0, 1)
        name = profile_name(args.profile)
        write_json({"profile": name, "timings_s": timings,
                    "total_s": round(sum(timings.values()), 1)},
                   project_root() / "runs" / name / "run_all_timings.json")
        say(f"all {len(timings)} notebook(s) done: "
            + ", ".join(f"{k} {v}s" for k, v in timings.items()))
        report_page(args.profile)
        return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    path = find_notebook(args.notebook)
    name = profile_name(args.profile)
    overrides = {k: parse_value(v) for k, v in args.param}
    _checked(load_profile(args.profile), [path],
             {**overrides, args.name: parse_value(args.values[0])})
    with profile_lock(profile_name(args.profile), args.command, wait=not args.no_wait):
        base = project_root() / "runs" / name / "sweeps" / path.stem / args.name
        fig_base = project_root() / "figures" / name / "sweeps" / path.stem / args.name
        runs = []
        for raw in args.values:
            value, label = parse_value(raw), f"{args.name}={raw}"
            dirs = {"out_dir": str(base / label), "figures_dir": str(fig_base / label)}
            try:
                execute(path, args.profile, {**overrides, args.name: value, **dirs},
                        log_output=args.verbose, force=args.force)
            except RunFailed as exc:
                say(f"FAILED: {exc}", file=sys.stderr)
                return 1
            runs.append({"value": value, **dirs})
        index = write_json({"notebook": path.stem, "param": args.name, "profile": name,
                            "runs": runs}, base / "sweep.json")
        say(f"sweep done: {len(runs)} run(s); index at {index}")
        if path.stem in sweeps.SUMMARIES:  # the across-runs table and figure of the stage's sweeps
            make_table, make_figure = sweeps.SUMMARIES[path.stem]
            table = make_table(index)
            save_table(table.drop(columns=["out_dir"], errors="ignore"), "sweep_summary", fig_base)
            save_figure(make_figure(table, args.name), "sweep_summary", fig_base, name)
            say(f"sweep summary: {fig_base / 'sweep_summary.png'}")
        report_page(args.profile, sweep=(index, fig_base))
        return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Every notebook of the profile, each parameter with its value and where it comes from."""
    profile = load_profile(args.profile)
    paths = _selected(profile, "")
    _checked(profile, paths, {})
    chain = profile.get("extends") or [profile.get("name")]
    print(f"profile {' <- '.join(map(str, chain))}: {profile.get('description', '')}".rstrip(": "))
    print("    notebooks: " + ", ".join(p.stem for p in paths))
    for path in paths:
        decl = read_parameters(path)
        full, given = notebook_parameters(profile, path.stem, decl, {}, args.profile)
        print(f"{path.stem}: {spec(path.stem).question}")
        for pname, p in decl.items():
            src = "profile" if pname in given else "default"
            print(f"    {pname}: {p.type} = {full[pname]!r}  [{src}]  {p.help}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the profile's notebooks in order")
    run.add_argument("--only", default="", help="comma-separated notebooks, e.g. 01,02")
    sw = sub.add_parser("sweep", help="run one notebook for several values of one parameter")
    sw.add_argument("notebook")
    sw.add_argument("name", metavar="param")
    sw.add_argument("values", nargs="+")
    ls = sub.add_parser("list", help="list the profile's notebooks and their parameters")
    for p in (run, sw, ls):
        p.add_argument("--profile", default="demo", help="profile name or YAML path (default demo)")
    for p in (run, sw):
        p.add_argument("-p", "--param", nargs=2, action="append", default=[],
                       metavar=("NAME", "VALUE"), help="override a notebook parameter (YAML value)")
        p.add_argument("-v", "--verbose", action="store_true", help="stream cell outputs")
        p.add_argument("--force", action="store_true", help="rerun stages that are up to date")
        p.add_argument("--no-wait", action="store_true", help="another run of the profile is "
                       f"running: exit {ALREADY_RUNNING}, do not wait for it")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    old_handlers = {}
    with contextlib.suppress(ValueError):  # signals are handled in the main thread only
        for signum in (signal.SIGINT, signal.SIGTERM):
            old_handlers[signum] = signal.signal(signum, _interrupted)
    try:
        args.command = shlex.join(["run_all.sh", *argv])
        return {"run": cmd_run, "sweep": cmd_sweep, "list": cmd_list}[args.cmd](args)
    except (ProfileNotFound, ProfileError, ParameterError, AlreadyRunning) as exc:
        say(str(exc), file=sys.stderr)
        return ALREADY_RUNNING if isinstance(exc, AlreadyRunning) else 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        how = " (SIGTERM)" if isinstance(exc, Terminated) else ""
        print(f"\n[run_all] interrupted{how}; rerun the same command to resume (finished stages "
              "and finished parts are kept)", file=sys.stderr, flush=True)
        return 143 if how else 130
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        tether.STOPPING.clear()


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the kernel is stopped and the run can be resumed."""


def _interrupted(signum, frame):
    """Ctrl-C raises KeyboardInterrupt and SIGTERM ``Terminated``, both after telling
    ``laionet.jobs.processes`` to kill kernels at once rather than wind them down."""
    tether.STOPPING.set()
    if signum != signal.SIGTERM:
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup is not interrupted
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
