"""One report page per run: ``figures/<profile>/index.html`` (and one per sweep, in its folder).

Every figure and table of the run, with the paper figure it reproduces (B1-B20 or "extension")
and a caption from the catalogue (the table "Every file" of ``docs/FIGURES.md``), the notebook
and parameters that made it (its record ``_stage/outputs.json``, written by ``S.figure`` /
``S.table``, and the runner's ``manifest.json``) and its executed HTML. Static, relative links
only: it opens from the file system. Files in the figure folder that no stage's latest run
recorded (left from an older run, or saved by other code) are listed apart.

    python -m laionet.pipeline.report --profile tiny        # rewrite the page of a profile's runs
"""

import argparse
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import pandas as pd
from markupsafe import Markup

from laionet.pipeline.claims import CLAIMS_JSON, write_claims
from laionet.pipeline.params import notebook_file, read_parameters
from laionet.pipeline.profiles import load_profile, profile_name
from laionet.pipeline.stage import MANIFEST, OUTPUTS, STATE_DIR
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

    @property
    def anchor(self) -> str:
        return quote(f"{self.section}-{self.name}-{self.kind}", safe="")

    def file(self, suffix: str) -> Path | None:
        return next((f for f in self.files if f.suffix == suffix and f.is_file()), None)


@dataclass
class StageRun:
    """One stage's latest run: its manifest, its executed notebook and what it saved."""

    stem: str
    out: Path
    label: str = ""                # e.g. "threshold=0.7" in a sweep
    manifest: dict[str, Any] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)

    @property
    def section(self) -> str:
        return quote(self.stem + (f"-{self.label}" if self.label else ""), safe="")

    @property
    def html(self) -> Path | None:
        return next((self.out / n for n in (f"{self.stem}.html", f"{self.stem}.failed.html")
                     if (self.out / n).is_file()), None)


# ------------------------------------------------------------------------------ gathering
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


def _json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stage_run(stem: str, out: Path, label: str = "") -> StageRun:
    """A stage's run folder as the report reads it."""
    run = StageRun(stem, out, label, manifest := _json(out / MANIFEST))
    for rec in _json(out / STATE_DIR / OUTPUTS).get("outputs") or []:
        base = Path(rec.get("figures_dir") or out)
        run.outputs.append(Output(
            rec["name"], rec.get("kind", "figure"), [base / f for f in rec.get("files") or []],
            lookup(rec["name"]), stem,
            _params_note(rec.get("params") or {}, manifest, rec.get("by", "")), run.section))
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
    fig_dir, runs_dir = project_root() / "figures" / name, project_root() / "runs" / name
    runs = [stage_run(stem, runs_dir / stem) for stem in _profile_stems(profile_key, runs_dir)]
    runs = [r for r in runs if r.manifest or r.outputs]
    intro = Markup("The latest run of each notebook of profile <code>{0}</code> "
                   "(<code>./run_all.sh --profile {0}</code>).").format(name)
    claims, _ = write_claims(profile_key)
    return _write(fig_dir / INDEX, f"LAIONet companion: figures and tables of profile {name!r}",
                  intro, runs, unclaimed(fig_dir, runs), claims=claims)


def write_sweep_report(index_json: Path, fig_base: Path) -> Path:
    """``figures/<profile>/sweeps/<notebook>/<param>/index.html``: one section per value."""
    index = read_json(index_json)
    stem, param = index["notebook"], index["param"]
    runs = [stage_run(stem, Path(r["out_dir"]), f"{param}={r['value']}") for r in index["runs"]]
    title = f"LAIONet companion: sweep of {stem} over {param} (profile {index['profile']!r})"
    values = " ".join(str(r["value"]) for r in index["runs"])
    intro = Markup("<code>./run_all.sh sweep {} {} {} --profile {}</code>: one run of {} per "
                   "value. Index: <a href='{}'>{}</a>.").format(
        stem[:2], param, values, index["profile"], stem, _href(index_json, fig_base),
        index_json.name)
    extra = unclaimed(fig_base, runs)
    for o in extra:
        if o.name == "sweep_summary":
            o.note = f"made by the runner from {index_json.name}, across all values"
    return _write(fig_base / INDEX, title, intro, runs, extra)


def _by_paper(outputs: list[Output]) -> list[tuple[str, list[Output]]]:
    """The summary's rows: each paper figure (made by this run or not), then the extensions and
    the files the catalogue does not know, when there are any."""
    rows: dict[str, list[Output]] = {p: [] for p in (*PAPER, EXTENSION, "?")}
    for o in outputs:
        for paper in (o.entry.paper, *o.entry.also) if o.entry else ("?",):
            rows.setdefault(paper, []).append(o)
    return [("not in the catalogue" if p == "?" else p, outs) for p, outs in rows.items()
            if outs or p in PAPER]


def _changed_params(run: StageRun) -> dict[str, Any]:
    """The run's parameters that differ from its notebook's defaults."""
    try:
        defaults = {k: p.default for k, p in read_parameters(notebook_file(run.stem)).items()}
    except (OSError, ValueError, SyntaxError):
        defaults = {}
    return {k: v for k, v in (run.manifest.get("params") or {}).items()
            if k in defaults and defaults[k] != v}


def _table_preview(csv: Path) -> Markup:
    try:
        df = pd.read_csv(csv)
    except Exception as exc:  # noqa: BLE001 (a preview only; the link to the file stays)
        return Markup("<p class='missing'>could not read {}: {}</p>").format(csv.name, exc)
    more = (f"<p class='note'>first {TABLE_PREVIEW_ROWS} of {len(df)} rows</p>"
            if len(df) > TABLE_PREVIEW_ROWS else "")
    return Markup(df.head(TABLE_PREVIEW_ROWS).to_html(
        index=False, border=0, classes="preview", float_format=lambda x: f"{x:.4g}") + more)


def _href(target: Path, here: Path) -> str:
    return quote(os.path.relpath(target, here).replace(os.sep, "/"), safe="/")


def _claim_rows(claims: pd.DataFrame | None) -> list[dict[str, str]]:
    """The claims table as the page shows it: numbers to 3 decimals, the interval in brackets."""
    if claims is None:
        return []
    def fmt(x: Any) -> str:
        return "" if pd.isna(x) else f"{x:.3f}"

    return [{**r, "value": fmt(r["value"]), "n": "" if pd.isna(r["n"]) else str(r["n"]),
             "interval": f"[{fmt(r['lo'])}, {fmt(r['hi'])}]" if not pd.isna(r["lo"]) else ""}
            for r in claims.to_dict("records")]


def _write(dest: Path, title: str, intro: Markup, runs: list[StageRun],
           other: list[Output], claims: pd.DataFrame | None = None) -> Path:
    here = dest.parent
    here.mkdir(parents=True, exist_ok=True)
    outputs = [o for r in runs for o in r.outputs] + other
    page = _PAGE.render(
        claims=_claim_rows(claims), claims_json=CLAIMS_JSON,
        title=title, intro=intro, written=time.strftime("%Y-%m-%d %H:%M:%S"), runs=runs,
        other=other, by_paper=_by_paper(outputs), n_files=len(outputs), figures_md=FIGURES_MD,
        href=lambda target: _href(target, here), notebook_file=notebook_file, spec=spec,
        changed_params=_changed_params, preview=_table_preview, repr=repr)
    return write_text(page, dest)


# autoescaped: every value is escaped, except the Markup of intro and the table previews
_PAGE = jinja2.Environment(autoescape=True, trim_blocks=True).from_string("""\
<!doctype html>
<html lang='en'><head><meta charset='utf-8'><title>{{ title }}</title><style>
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.15em .5em;text-align:left;vertical-align:top}
.summary th{white-space:nowrap}.out{margin:1.2em 0;padding:.5em 0;border-top:1px dotted #ccc}
.out img{max-width:100%;max-height:420px;border:1px solid #eee}
.paper{display:inline-block;min-width:4.5em;font-weight:bold;color:#fff;background:#36c;
padding:0 .4em;border-radius:3px;text-align:center}.caption{margin:.2em 0 .4em;color:#333}
.question{font-style:italic}.missing{color:#b00}.note{color:#865}.done{color:#080}
.failed,.running{color:#b00}.preview{font-size:12px}.claims{font-size:12.5px}
.v-yes{color:#080;font-weight:bold}.v-no{color:#b00;font-weight:bold}.v-not-significant{color:#865}
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ intro }} Written {{ written }}. Paper figure numbers B1-B20 are those of <a href='{{
href(figures_md) }}'>docs/FIGURES.md</a> (which lists every figure of the paper, its notebook and
parameters); <em>extension</em>: not in the paper.</p>
{% if claims %}
<section id='claims'><h2>The paper's claims on this run</h2><p>Each claim of the paper, the number
it reports, this run's number with its 95% interval, and whether it holds in direction and in size
(the interval holds the paper's number). Also in <a href='{{ claims_json }}'>{{ claims_json
}}</a>.</p><table class='claims'><tr><th>claim</th><th>where</th><th>measured as</th><th>paper</th>
<th>this run</th><th>95% interval</th><th>n</th><th>direction</th><th>size</th><th>note</th></tr>
{% for c in claims %}<tr><td>{{ c.statement }}</td><td>{{ c.section }}</td><td>{{ c.measure }}</td>
<td>{{ c.paper }}</td><td>{{ c.value }}</td><td>{{ c.interval }}</td><td>{{ c.n }}</td><td
class='v-{{ c.direction|replace(" ", "-")|replace("/", "") }}'>{{ c.direction }}</td><td
class='v-{{ c.size|replace("/", "") }}'>{{ c.size }}</td><td>{{ c.note }}</td></tr>
{% endfor %}</table></section>
{% endif %}
<section><h2>By paper figure ({{ n_files }} files)</h2><table class='summary'>
{% for paper, outs in by_paper %}<tr><th>{{ paper }}</th><td>{% for o in outs %}{{ ", " if not
loop.first }}<a href='#{{ o.anchor }}'>{{ o.name }}</a>{{ " (table)" if o.kind == "table" }}{%
else %}<span class='missing'>not made by this run</span>{% endfor %}</td></tr>{% endfor %}
</table></section>
{% macro output(o) %}
<div class='out' id='{{ o.anchor }}'><p><span class='paper'>{{ o.entry.paper if o.entry else "?"
}}</span> <b>{{ o.name }}</b> ({{ o.kind }}) &middot;{% for f in o.files %} {% if f.is_file()
%}<a href='{{ href(f) }}'>{{ f.suffix[1:].upper() }}</a>{% else %}<span class='missing'>{{ f.name
}} (missing)</span>{% endif %}{% endfor %}{% if o.stage %} made by <a href='#{{ o.section }}'>{{
o.stage }}</a>{% endif %}{% if o.note %} <span class='note'>{{ o.note }}</span>{% endif %}</p>
<p class='caption'>{{ o.entry.caption if o.entry else
"not in the catalogue (docs/FIGURES.md): add a row" }}</p>
{% if o.file(".png") %}<a href='{{ href(o.file(".png")) }}'><img src='{{ href(o.file(".png"))
}}' alt='{{ o.name }}' loading='lazy'></a>{% elif o.file(".csv") %}{{ preview(o.file(".csv"))
}}{% endif %}</div>
{% endmacro %}
{% for run in runs %}
{% set m, params, changed = run.manifest, run.manifest.params or {}, changed_params(run) %}
<section id='{{ run.section }}'><h2>{{ run.stem }}{{ " (%s)" % run.label if run.label }}</h2>
<p class='question'>{{ spec(run.stem).question }}</p>
<p>status <b class='{{ m.status or "no manifest" }}'>{{ m.status or "no manifest" }}</b>{{
" at %s" % m.written_at if m.written_at }}{{ " in %s s" % m.timings_s.total if m.timings_s and
m.timings_s.total is not none }} &middot; {% if run.html %}<a href='{{ href(run.html)
}}'>executed notebook (HTML)</a>{% else %}<span class='missing'>no executed HTML</span>{% endif
%} &middot; <a href='{{ href(notebook_file(run.stem)) }}'>notebooks/{{ run.stem }}.py</a></p>
{% if params %}<p>Parameters that differ from the notebook's defaults: {% for k, v in
changed.items() %}{{ ", " if not loop.first }}<code>{{ k }}={{ repr(v) }}</code>{% else %}none{%
endfor %}.</p><details><summary>all {{ params|length }} parameters</summary><table
class='params'>{% for k, v in params.items() %}<tr><td><code>{{ k }}</code></td><td><code>{{
repr(v) }}</code></td><td>{{ "set by the run" if k in changed }}</td></tr>{% endfor
%}</table></details>{% endif %}
{% for o in run.outputs %}{{ output(o) }}{% else %}
<p class='missing'>This run recorded no figure or table.</p>{% endfor %}
</section>
{% endfor %}
{% if other %}
<section id='other'><h2>Other files in this folder</h2><p>Not recorded by the latest run of any
notebook above: left from an older run (a figure that is no longer made, or made under other
parameters), or saved by other code.</p>{% for o in other %}{{ output(o) }}{% endfor %}</section>
{% endif %}
</body></html>
""")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laionet.pipeline.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo", help="profile name or YAML path (default demo)")
    print(write_run_report(ap.parse_args(argv).profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
