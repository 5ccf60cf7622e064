"""The report page of a run and of a sweep (laionet.pipeline.report, written by the runner), the figure
catalogue behind it (docs/FIGURES.md), and the tiny run's parameters run both ways (runner / by hand)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from laionet.pipeline import report, runner

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOK = '''\
# %% [markdown]
# A toy stage that saves a figure and a table.

# %% tags=["parameters"]
profile: str = "demo"  # profile name
out_dir: str = ""  # run folder override
figures_dir: str = ""  # figure folder override
threshold: float = 0.5  # a threshold

# %%
import matplotlib.pyplot as plt
import pandas as pd
from laionet.pipeline.stage import open_stage
S = open_stage("01_toy", globals())
fig, ax = plt.subplots()
ax.plot([0, 1], [0, threshold])
S.figure(fig, "02_B1_similarity_threshold", title="a toy B1")
S.table(pd.DataFrame({"threshold": [threshold], "kept": [3]}), "01_toy_counts")
'''


class Links(HTMLParser):
    """Every href and img src of a page."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a["src"])


def check_links(page: Path) -> Links:
    """Every relative link of ``page`` names an existing file, every #anchor an element."""
    links = Links()
    links.feed(page.read_text())
    for ref in links.hrefs + links.imgs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc, f"not a relative link: {ref}"
        if parts.path:
            assert (page.parent / unquote(parts.path)).exists(), f"{page}: broken link {ref}"
        else:
            assert parts.fragment in links.ids, f"{page}: no element #{parts.fragment}"
    return links


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='toy'\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks" / "01_toy.py").write_text(NOTEBOOK)
    (tmp_path / "profiles" / "toy.yaml").write_text("name: toy\nnotebooks: [01_toy]\n"
                                                    "parameters: {threshold: 0.25}\n")
    monkeypatch.setenv("LAIONET_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_a_run_and_a_sweep_write_their_report_pages(project, capsys):
    stale = project / "figures" / "toy" / "01_gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an old figure")
    assert runner.main(["run", "--profile", "toy"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    page = project / "figures" / "toy" / "index.html"
    assert out[-1] == f"[run_all] report: {page}"  # run_all.sh prints the page last
    text = page.read_text()
    links = check_links(page)
    assert "../../runs/toy/01_toy/01_toy.html" in links.hrefs
    assert "02_B1_similarity_threshold.png" in links.imgs and "01_toy_counts.csv" in links.hrefs
    b1 = report.lookup("02_B1_similarity_threshold")
    assert b1.paper == "B1" and b1.caption in text
    assert "threshold=0.25" in text  # the parameters that made it (the profile's)
    assert "01_toy_counts" in text and "not in the catalogue (docs/FIGURES.md)" in text
    other = text[text.index("Other files in this folder"):]
    assert "01_gone" in other and "02_B1_similarity_threshold" not in other

    assert runner.main(["sweep", "01", "threshold", "0.1", "0.2", "--profile", "toy"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    spage = project / "figures" / "toy" / "sweeps" / "01_toy" / "threshold" / "index.html"
    assert out[-1] == f"[run_all] report: {spage}"
    links = check_links(spage)
    for value in ("0.1", "0.2"):
        assert (f"../../../../../runs/toy/sweeps/01_toy/threshold/threshold%3D{value}/01_toy.html"
                in links.hrefs)
        assert f"threshold%3D{value}/02_B1_similarity_threshold.png" in links.imgs
    assert "Other files" not in spage.read_text()


def test_a_figure_saved_by_hand_with_other_parameters_says_so(project, tmp_path):
    from laionet.pipeline import stage

    man = project / "runs" / "toy" / "01_toy" / "manifest.json"
    man.parent.mkdir(parents=True)
    man.write_text(json.dumps({"status": "done", "params": {"profile": "toy", "threshold": 0.5}}))
    S = stage.open_stage("01_toy", {"profile": "toy", "out_dir": "", "figures_dir": "",
                                    "threshold": 0.5})  # by hand: the profile's 0.25
    import pandas as pd

    S.table(pd.DataFrame({"a": [1]}), "02_threshold_curves")
    run = report.stage_run("01_toy", man.parent)
    assert [o.name for o in run.outputs] == ["02_threshold_curves"]
    assert run.outputs[0].note == ("saved from a notebook run by hand (JupyterLab) with "
                                   "threshold=0.25 (the manifest's run used threshold=0.5)")


def test_catalogue_entries_are_paper_figures_or_extensions():
    cat = report.catalogue()
    assert len(cat) > 70
    for stem, (_, entry) in cat.items():
        assert entry.paper in report.PAPER + (report.EXTENSION,), stem
        assert set(entry.also) <= set(report.PAPER), stem
        assert entry.caption.endswith(".") and "\n" not in entry.caption, stem
    assert {p for _, e in cat.values() for p in (e.paper, *e.also)} >= set(report.PAPER)
    assert cat["04_accuracy"][1].also == ("B4", "B6")
    assert report.lookup("05_intra_class_sim_hist_demo_tower") == cat["05_intra_class_sim_hist_<encoder>"][1]
    assert report.lookup("05_intra_class_sim_hist_") is None and report.lookup("nope") is None


@pytest.mark.slow
def test_every_figure_and_table_of_the_tiny_run_is_in_the_catalogue(tiny_run):
    """A new figure without a catalogue entry fails here; so does a paper figure B1-B20 that
    the tiny run no longer makes."""
    rc, scratch = tiny_run
    assert rc == 0
    figs = scratch / "figures" / "tiny"
    stems = {p.stem for p in figs.iterdir() if p.suffix in (".png", ".csv")}
    assert len(stems) > 40
    missing = sorted(s for s in stems if report.lookup(s) is None)
    assert not missing, f"add rows for these to docs/FIGURES.md: {missing}"
    covered = {p for s in stems for p in (report.lookup(s).paper, *report.lookup(s).also)}
    assert set(report.PAPER) <= covered, \
        f"paper figures the tiny run makes none of: {sorted(set(report.PAPER) - covered)}"

    page = figs / "index.html"
    text = page.read_text()
    check_links(page)
    assert "Other files in this folder" not in text, "a file no stage recorded (S.figure/S.table)"
    assert "not made by this run" not in text and "not in the catalogue" not in text
    for stem in sorted(stems):
        assert f"<b>{stem}</b>" in text, stem
    for stem in json.loads((scratch / "runs" / "tiny" / "run_all_timings.json").read_text())["timings_s"]:
        assert f"../../runs/tiny/{stem}/{stem}.html" in text, stem


@pytest.mark.slow
def test_by_hand_with_only_profile_edited_gets_the_runners_parameters(tiny_run, monkeypatch):
    """Notebook 07 (many tiny-profile values differ from its defaults), run both ways: by the
    runner (tiny_run's manifest) and by nbclient from the jupytext-converted .py with only
    ``profile = "tiny"`` edited, no papermill: the resolved parameters are the same."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    rc, scratch = tiny_run
    assert rc == 0
    stem = "07_image_to_selection_link"
    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    cells = []
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            assert 'profile: str = "demo"' in cell.source
            cell.source = cell.source.replace('profile: str = "demo"', 'profile: str = "tiny"')
        cells.append(cell)
        if cell.cell_type == "code" and "open_stage(" in cell.source:
            break
    cells.append(nbformat.v4.new_code_cell(
        'import json\nprint("RESOLVED=" + json.dumps(S.params, default=str))'))
    nb.cells = cells
    monkeypatch.setenv("LAIONET_ROOT", str(scratch))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(scratch)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    by_hand = json.loads(re.search(r"RESOLVED=(.*)", printed).group(1))
    by_runner = json.loads((scratch / "runs" / "tiny" / stem / "manifest.json").read_text())["params"]
    assert by_hand == by_runner
    assert by_hand["threshold_mode"] == "quantile" and by_hand["text_encoder"] == "minilm"
    assert re.search(r"threshold_mode += 'quantile' +from profile tiny: notebook_parameters", printed)
    assert re.search(r"profile += 'tiny' +from cell edit", printed)


def test_the_readme_walks_a_new_user_through_the_report_and_jupyterlab():
    readme = (ROOT / "README.md").read_text()
    for needle in ("figures/demo/index.html", "jupyter lab", "unset-default-viewer python"):
        assert needle in readme, needle
