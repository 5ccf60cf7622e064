"""One report page per run: ``figures/<profile>/index.html`` (and one per sweep, in its folder).

Every figure and table of the run, with the paper figure it reproduces (B1-B20 or "extension")
and a one-line caption, both from the catalogue (the table "Every file" of ``docs/FIGURES.md``),
the notebook and parameters that made it and a link to that notebook's executed HTML. The page
is static, with relative links only: it opens from the file system, no server.

What a stage saved comes from its own record (``S.figure`` / ``S.table`` write
``runs/<profile>/<stage>/_stage/outputs.json``; the runner starts a fresh one each time the stage
runs), its parameters from the runner's ``manifest.json``. Files in the figure folder that no
stage's latest run recorded (left over from an older run, or saved by other code) are listed
apart, so nothing in the folder goes unexplained.

    python -m laionet.pipeline.report --profile tiny        # rewrite the page of a profile's runs
"""

from __future__ import annotations

import argparse
import html
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from laionet.pipeline.params import read_parameters
from laionet.pipeline.profiles import load_profile, profile_name
from laionet.pipeline.stage import MANIFEST, OUTPUTS, STATE_DIR, notebook_file
from laionet.pipeline.stages import spec
from laionet.util.files import read_json, write_text
from laionet.util.paths import project_root

# the catalogue: this checkout's docs/FIGURES.md (the library is installed editable from it)
FIGURES_MD = Path(__file__).resolve().parents[3] / "docs" / "FIGURES.md"
PAPER = tuple(f"B{i}" for i in range(1, 21))
EXTENSION = "extension"
INDEX = "index.html"
FIGURE_EXTS = (".png", ".pdf")
TABLE_EXTS = (".csv", ".md")
TABLE_PREVIEW_ROWS = 8


@dataclass(frozen=True)
class Entry:
    """A catalogue row: the paper figure (``B1``-``B20`` or ``extension``), a caption, and other
    paper figures it also holds the numbers of."""

    paper: str
    caption: str
    also: tuple[str, ...] = ()


@cache
def catalogue(path: Path = FIGURES_MD) -> dict[str, tuple[re.Pattern, Entry]]:
    """The rows of the table "Every file" of docs/FIGURES.md: file stem -> (a pattern of the
    saved files' stems, ``<encoder>`` standing for any text; the entry)."""
    text = path.read_text() if path.is_file() else ""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \| (.+?) \|$", text, re.MULTILINE)
    return {stem: (re.compile(".+".join(map(re.escape, re.split(r"<[a-z_]+>", stem))) + r"\Z"),
                   Entry(figs.split(", ")[0], caption, tuple(figs.split(", ")[1:])))
            for stem, figs, caption in rows}


def lookup(stem: str) -> Entry | None:
    """The catalogue entry of a saved figure or table (``05_intra_class_sim_hist_demo_tower``
    finds ``05_intra_class_sim_hist_<encoder>``), or None for one the catalogue does not know."""
    return next((e for pat, e in catalogue().values() if pat.match(stem)), None)


@dataclass
class Output:
    """One saved figure or table, as the report shows it."""

    name: str
    kind: str                      # figure | table
    files: list[Path]              # absolute
    entry: Entry | None            # the catalogue's paper number and caption
    stage: str | None = None       # the notebook that saved it (None: no record says)
    note: str = ""                 # e.g. saved by hand with other parameters
    section: str = "other"         # the id of the page section that lists it


@dataclass
class StageRun:
    """One stage's latest run: its manifest, its executed notebook and what it saved."""

    stem: str
    out: Path
    label: str = ""                # e.g. "threshold=0.7" in a sweep
    manifest: dict[str, Any] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)

    @property
    def html(self) -> Path | None:
        for name in (f"{self.stem}.html", f"{self.stem}.failed.html"):
            if (self.out / name).is_file():
                return self.out / name
        return None


# ------------------------------------------------------------------------------ gathering
def _record(out: Path) -> list[dict[str, Any]]:
    try:
        return list(read_json(out / STATE_DIR / OUTPUTS).get("outputs") or [])
    except (OSError, ValueError, AttributeError):
        return []


def _params_note(saved: dict[str, Any], manifest: dict[str, Any], by: str) -> str:
    """Say so when a file was last saved by a notebook run by hand, or with other parameters
    than the runner's run recorded in the manifest."""
    ran = {k: v for k, v in (manifest.get("params") or {}).items() if k in saved}
    differ = {k: v for k, v in saved.items() if ran.get(k) != v}
    if by == "runner" and not differ:
        return ""
    how = "saved from a notebook run by hand (JupyterLab)" if by != "runner" else "saved"
    if differ:
        return how + " with " + ", ".join(f"{k}={v!r}" for k, v in differ.items()) + \
            " (the manifest's run used " + ", ".join(f"{k}={ran.get(k)!r}" for k in differ) + ")"
    return how + ", with the manifest's parameters"


def stage_run(stem: str, out: Path, label: str = "") -> StageRun:
    """A stage's run folder as the report reads it."""
    try:
        manifest = read_json(out / MANIFEST)
    except (OSError, ValueError):
        manifest = {}
    run = StageRun(stem, out, label, manifest)
    for rec in _record(out):
        base = Path(rec.get("figures_dir") or out)
        files = [base / f for f in rec.get("files") or []]
        run.outputs.append(Output(rec["name"], rec.get("kind", "figure"), files,
                                  lookup(rec["name"]), stem,
                                  _params_note(rec.get("params") or {}, manifest,
                                               rec.get("by", "")),
                                  _section_id(stem, label)))
    return run


def unclaimed(folder: Path, runs: Iterable[StageRun]) -> list[Output]:
    """Figures and tables in ``folder`` (not below it) that no stage run recorded."""
    claimed = {f.resolve() for r in runs for o in r.outputs for f in o.files}
    found: dict[tuple[str, str], list[Path]] = {}
    for p in sorted(folder.glob("*")):
        if p.is_file() and p.suffix in FIGURE_EXTS + TABLE_EXTS and p.resolve() not in claimed:
            kind = "figure" if p.suffix in FIGURE_EXTS else "table"
            found.setdefault((p.stem, kind), []).append(p)
    return [Output(stem, kind, files, lookup(stem)) for (stem, kind), files in found.items()]


def _profile_stems(profile_key: str, runs_dir: Path) -> list[str]:
    try:
        stems = list(load_profile(profile_key).get("notebooks") or [])
    except FileNotFoundError:
        stems = []
    extra = sorted(p.parent.name for p in runs_dir.glob(f"*/{MANIFEST}")
                   if p.parent.name not in stems)
    return stems + extra


# ------------------------------------------------------------------------------ the pages
def write_run_report(profile_key: str) -> Path:
    """``figures/<profile>/index.html`` for the profile's latest run of each stage."""
    name = profile_name(profile_key)
    root = project_root()
    fig_dir = root / "figures" / name
    runs_dir = root / "runs" / name
    runs = [stage_run(stem, runs_dir / stem) for stem in _profile_stems(profile_key, runs_dir)]
    runs = [r for r in runs if r.manifest or r.outputs]
    title = f"LAIONet companion: figures and tables of profile {name!r}"
    intro = (f"The latest run of each notebook of profile <code>{_e(name)}</code> "
             f"(<code>./run_all.sh --profile {_e(name)}</code>).")
    return _write(fig_dir / INDEX, title, intro, runs, unclaimed(fig_dir, runs))


def write_sweep_report(index_json: Path, fig_base: Path) -> Path:
    """``figures/<profile>/sweeps/<notebook>/<param>/index.html``: one section per value."""
    index = read_json(index_json)
    stem, param = index["notebook"], index["param"]
    runs = [stage_run(stem, Path(r["out_dir"]), f"{param}={r['value']}") for r in index["runs"]]
    title = f"LAIONet companion: sweep of {stem} over {param} (profile {index['profile']!r})"
    values = " ".join(str(r["value"]) for r in index["runs"])
    intro = (f"<code>./run_all.sh sweep {_e(stem[:2])} {_e(param)} {_e(values)} --profile "
             f"{_e(index['profile'])}</code>: one run of {_e(stem)} per value. Index: "
             f"{_link(index_json, fig_base, index_json.name)}.")
    extra = unclaimed(fig_base, runs)
    for o in extra:
        if o.name == "sweep_summary":
            o.note = f"made by the runner from {index_json.name}, across all values"
    return _write(fig_base / INDEX, title, intro, runs, extra)


def _write(dest: Path, title: str, intro: str, runs: list[StageRun], other: list[Output]) -> Path:
    here = dest.parent
    here.mkdir(parents=True, exist_ok=True)
    figures_link = _link(FIGURES_MD, here, "docs/FIGURES.md")
    body = [f"<h1>{_e(title)}</h1>",
            (f"<p>{intro} Written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}. Paper figure numbers "
             f"B1-B20 are those of {figures_link} (which lists every "
             "figure of the paper, its notebook and parameters); <em>extension</em>: not in the "
             "paper.</p>"),
            _summary(runs + ([StageRun("other", here, outputs=other)] if other else []), here)]
    for run in runs:
        body.append(_stage_section(run, here))
    if other:
        body.append("<section id='other'><h2>Other files in this folder</h2><p>Not recorded by "
                    "the latest run of any notebook above: left from an older run (a figure that "
                    "is no longer made, or made under other parameters), or saved by other "
                    "code.</p>")
        body += [_output(o, here) for o in other]
        body.append("</section>")
    page = (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return write_text(page, dest)


def _summary(runs: list[StageRun], here: Path) -> str:
    by_paper: dict[str, list[Output]] = {}
    for r in runs:
        for o in r.outputs:
            for paper in (o.entry.paper, *o.entry.also) if o.entry else ("?",):
                by_paper.setdefault(paper, []).append(o)
    rows = []
    for paper in [*PAPER, EXTENSION, "?"]:
        outs = by_paper.get(paper, [])
        if paper in ("?", EXTENSION) and not outs:
            continue
        links = ", ".join(f"<a href='#{_anchor(o)}'>{_e(o.name)}</a>"
                          + (" (table)" if o.kind == "table" else "") for o in outs) or \
            "<span class='missing'>not made by this run</span>"
        label = "not in the catalogue" if paper == "?" else paper
        rows.append(f"<tr><th>{_e(label)}</th><td>{links}</td></tr>")
    n = sum(len(r.outputs) for r in runs)
    return (f"<section><h2>By paper figure ({n} files)</h2><table class='summary'>"
            + "".join(rows) + "</table></section>")


def _stage_section(run: StageRun, here: Path) -> str:
    man = run.manifest
    heading = f"{run.stem}" + (f" ({run.label})" if run.label else "")
    status = man.get("status", "no manifest")
    facts = [f"status <b class='{_e(status)}'>{_e(status)}</b>"]
    if man.get("written_at"):
        facts.append(f"at {_e(man['written_at'])}")
    total = (man.get("timings_s") or {}).get("total")
    if total is not None:
        facts.append(f"in {total} s")
    links = [_link(notebook_file(run.stem), here, f"notebooks/{run.stem}.py")]
    if run.html:
        links.insert(0, _link(run.html, here, "executed notebook (HTML)"))
    else:
        links.insert(0, "<span class='missing'>no executed HTML</span>")
    return (f"<section id='{_section_id(run.stem, run.label)}'><h2>{_e(heading)}</h2>"
            f"<p class='question'>{_e(spec(run.stem).question)}</p>"
            f"<p>{' '.join(facts)} &middot; {' &middot; '.join(links)}</p>"
            f"{_params(run)}"
            + ("".join(_output(o, here) for o in run.outputs) or
               "<p class='missing'>This run recorded no figure or table.</p>")
            + "</section>")


def _params(run: StageRun) -> str:
    params = run.manifest.get("params") or {}
    if not params:
        return ""
    try:
        defaults = {k: p.default for k, p in read_parameters(notebook_file(run.stem)).items()}
    except (OSError, ValueError, SyntaxError):
        defaults = {}
    changed = {k: v for k, v in params.items() if k in defaults and defaults[k] != v}
    shown = ", ".join(f"<code>{_e(k)}={_e(repr(v))}</code>" for k, v in changed.items()) or "none"
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(repr(v))}</code></td>"
                   f"<td>{'' if k not in changed else 'set by the run'}</td></tr>"
                   for k, v in params.items())
    return (f"<p>Parameters that differ from the notebook's defaults: {shown}.</p>"
            f"<details><summary>all {len(params)} parameters</summary><table class='params'>"
            f"{rows}</table></details>")


def _output(o: Output, here: Path) -> str:
    paper = o.entry.paper if o.entry else "?"
    caption = o.entry.caption if o.entry else "not in the catalogue (docs/FIGURES.md): add a row"
    files = " ".join(_link(f, here, f.suffix[1:].upper()) if f.is_file()
                     else f"<span class='missing'>{_e(f.name)} (missing)</span>" for f in o.files)
    made = f"made by <a href='#{o.section}'>{_e(o.stage)}</a>" if o.stage else ""
    note = f" <span class='note'>{_e(o.note)}</span>" if o.note else ""
    head = (f"<div class='out' id='{_anchor(o)}'><p><span class='paper'>{_e(paper)}</span> "
            f"<b>{_e(o.name)}</b> ({_e(o.kind)}) &middot; {files} {made}{note}</p>"
            f"<p class='caption'>{_e(caption)}</p>")
    png = next((f for f in o.files if f.suffix == ".png" and f.is_file()), None)
    csv = next((f for f in o.files if f.suffix == ".csv" and f.is_file()), None)
    if png is not None:
        src = _href(png, here)
        head += f"<a href='{src}'><img src='{src}' alt='{_e(o.name)}' loading='lazy'></a>"
    elif csv is not None:
        head += _table_preview(csv)
    return head + "</div>"


def _table_preview(csv: Path) -> str:
    try:
        df = pd.read_csv(csv)
    except Exception as exc:  # noqa: BLE001 (a preview only; the link to the file stays)
        return f"<p class='missing'>could not read {_e(csv.name)}: {_e(str(exc))}</p>"
    more = (f"<p class='note'>first {TABLE_PREVIEW_ROWS} of {len(df)} rows</p>"
            if len(df) > TABLE_PREVIEW_ROWS else "")
    return df.head(TABLE_PREVIEW_ROWS).to_html(index=False, border=0, classes="preview",
                                               float_format=lambda x: f"{x:.4g}") + more


def _section_id(stem: str, label: str = "") -> str:
    return quote(stem + (f"-{label}" if label else ""), safe="")


def _anchor(o: Output) -> str:
    return quote(f"{o.section}-{o.name}-{o.kind}", safe="")


def _href(target: Path, here: Path) -> str:
    return quote(os.path.relpath(target, here).replace(os.sep, "/"), safe="/")


def _link(target: Path, here: Path, text: str) -> str:
    return f"<a href='{_href(target, here)}'>{_e(text)}</a>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.15em .5em;text-align:left;vertical-align:top}
.summary th{white-space:nowrap}.out{margin:1.2em 0;padding:.5em 0;border-top:1px dotted #ccc}
.out img{max-width:100%;max-height:420px;border:1px solid #eee}
.paper{display:inline-block;min-width:4.5em;font-weight:bold;color:#fff;background:#36c;
padding:0 .4em;border-radius:3px;text-align:center}.caption{margin:.2em 0 .4em;color:#333}
.question{font-style:italic}.missing{color:#b00}.note{color:#865}.done{color:#080}
.failed,.running{color:#b00}.preview{font-size:12px}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laionet.pipeline.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo", help="profile name or YAML path (default demo)")
    args = ap.parse_args(argv)
    print(write_run_report(args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
