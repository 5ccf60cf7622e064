"""A notebook run by hand (JupyterLab, no papermill injection) gets what the runner would give it
with the parameters cell's values as the defaults: the profile named in the cell goes over the
cell, as papermill's injected values would (laionet.pipeline.interactive, via open_stage).
Toy projects, no kernels; tests/test_browser.py and test_report.py run real ones."""

from __future__ import annotations

import re
import textwrap

import pytest

from laionet.pipeline import params as params_mod
from laionet.pipeline import runner, stage
from laionet.pipeline.params import ParameterError, read_parameters

NOTEBOOK = '''\
# %% tags=["parameters"]
profile: str = "demo"  # profile name
out_dir: str = ""  # run folder override
figures_dir: str = ""  # figure folder override
threshold: float = 0.5  # a threshold
label: str = "x"  # a label
seed: int = 0  # seed
k: int = 1  # a count no profile sets

# %%
from laionet.pipeline.stage import open_stage
S = open_stage("01_toy", globals())
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='toy'\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks" / "01_toy.py").write_text(NOTEBOOK)
    (tmp_path / "profiles" / "toy.yaml").write_text(textwrap.dedent("""\
        name: toy
        notebooks: [01_toy]
        parameters: {threshold: 0.25, seed: 3}
        notebook_parameters: {01_toy: {label: from-profile}}
        """))
    monkeypatch.setenv("LAIONET_ROOT", str(tmp_path))
    return tmp_path


def _cell(project, **edits):
    """The kernel namespace after running the parameters cell as it is on disk, plus edits."""
    ns = {k: p.default for k, p in read_parameters(project / "notebooks" / "01_toy.py").items()}
    ns.update(edits)
    return ns


def _runner_values(project, profile="toy"):
    decl = read_parameters(project / "notebooks" / "01_toy.py")
    full, _ = params_mod.notebook_parameters(runner.load_profile(profile), "01_toy", decl, {}, profile)
    return full


def test_the_cells_profile_applies_as_the_runner_would(project, capsys):
    ns = _cell(project, profile="toy")
    S = stage.open_stage("01_toy", ns)
    assert S.params == _runner_values(project) and S.resolved_by == "interactive"
    assert S.params["threshold"] == 0.25 and S.params["label"] == "from-profile"
    assert ns["threshold"] == 0.25 and ns["seed"] == 3  # the notebook's later cells see them
    assert S.out == project / "runs" / "toy" / "01_toy"
    out = capsys.readouterr().out
    assert "`./run_all.sh --profile toy --only 01`" in out
    assert re.search(r"threshold +(= 0.25) +from profile toy: parameters\n", out), out
    assert re.search(r"label +(= 'from-profile') +from profile toy: notebook_parameters.01_toy", out)
    assert re.search(r"profile +(= 'toy') +from cell edit\n", out)
    assert "from the parameters cell's defaults: out_dir, figures_dir" in out


def test_the_profile_goes_over_the_cell_and_the_cell_gives_the_rest(project, capsys):
    ns = _cell(project, profile="toy", threshold=0.75, k=5)
    S = stage.open_stage("01_toy", ns)
    assert S.params["threshold"] == 0.25  # the profile sets it: the cell's 0.75 is a default
    assert S.params["k"] == 5 and S.sources["k"] == "cell edit"  # the profile does not set k
    assert S.params["label"] == "from-profile" and S.params["seed"] == 3
    assert S.sources["threshold"] == "profile toy: parameters"
    out = capsys.readouterr().out
    assert re.search(r"threshold += 0.25 +from profile toy: parameters \(the cell's 0.75 is not "
                     r"used: the profile sets threshold\)\n", out), out
    assert re.search(r"k += 5 +from cell edit\n", out), out


def test_a_saved_cell_gives_the_same_values(project):
    """JupyterLab autosaves the .py: an edit then sits in the file on disk too. The rule does not
    look at the file, so saving changes nothing."""
    before = stage.open_stage("01_toy", _cell(project, profile="toy", threshold=0.9, k=5)).params
    nb = project / "notebooks" / "01_toy.py"
    nb.write_text(NOTEBOOK.replace('"demo"  # profile', '"toy"  # profile')
                  .replace("threshold: float = 0.5", "threshold: float = 0.9").replace("k: int = 1", "k: int = 5"))
    assert stage.open_stage("01_toy", _cell(project)).params == before
    assert before["threshold"] == 0.25 and before["k"] == 5


def test_the_default_profile_applies_too(project):
    (project / "profiles" / "demo.yaml").write_text("name: demo\nnotebooks: [01_toy]\n"
                                                    "parameters: {seed: 7}\n")
    S = stage.open_stage("01_toy", _cell(project))
    assert S.params["seed"] == 7 and S.params["profile"] == "demo"
    assert S.sources["profile"] == "default"


def test_values_the_runner_injected_are_taken_as_they_are(project, capsys):
    ns = _cell(project, profile="toy", threshold=0.5)
    ns[stage.RUNNER_MARKER] = True
    S = stage.open_stage("01_toy", ns)
    assert S.params["threshold"] == 0.5 and S.resolved_by == "runner"
    assert capsys.readouterr().out == ""


def test_an_edit_of_the_wrong_type_is_refused(project):
    with pytest.raises(ParameterError, match="k must be int"):
        stage.open_stage("01_toy", _cell(project, profile="toy", k="many"))
