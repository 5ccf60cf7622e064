"""The headless runner: profiles, parameter injection, failures, sweeps (real papermill kernels)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from laionet.pipeline import runner
from laionet.pipeline.params import read_parameters

NOTEBOOK_OK = '''\
# %% [markdown]
# A toy stage.

# %% tags=["parameters"]
profile: str = "demo"  # profile name
out_dir: str = ""  # run folder override
figures_dir: str = ""  # figure folder override
threshold: float = 0.5  # a threshold
label: str = "x"  # a label

# %%
from laionet.util.files import write_json
from laionet.pipeline.stage import open_stage
S = open_stage("01_toy", globals())
write_json({"threshold": threshold, "label": label, "profile": profile}, S.out / "result.json")
'''

NOTEBOOK_FAIL = '''\
# %% tags=["parameters"]
profile: str = "demo"  # profile name

# %%
x = 1

# %%
raise ValueError("boom in the second cell")
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='toy'\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks" / "01_toy.py").write_text(NOTEBOOK_OK)
    (tmp_path / "notebooks" / "02_fail.py").write_text(NOTEBOOK_FAIL)
    (tmp_path / "profiles" / "toy.yaml").write_text(textwrap.dedent("""\
        name: toy
        notebooks: [01_toy]
        parameters: {threshold: 0.25}
        notebook_parameters: {01_toy: {label: from-profile}}
        """))
    monkeypatch.setenv("LAIONET_ROOT", str(tmp_path))
    return tmp_path


def test_profile_and_override_reach_the_notebook(project):
    rc = runner.main(["run", "--profile", "toy", "-p", "label", "from-cli"])
    assert rc == 0
    out = project / "runs" / "toy" / "01_toy"
    result = json.loads((out / "result.json").read_text())
    assert result == {"threshold": 0.25, "label": "from-cli", "profile": "toy"}
    assert (out / "01_toy.ipynb").is_file() and (out / "01_toy.html").is_file()
    timings = json.loads((project / "runs" / "toy" / "run_all_timings.json").read_text())
    assert set(timings["timings_s"]) == {"01_toy"}


def test_an_override_reaches_the_notebooks_that_declare_it(project):
    """``-p threshold`` on a profile where another notebook declares no threshold (it used to
    stop that notebook with "unknown parameter")."""
    (project / "notebooks" / "00_other.py").write_text(NOTEBOOK_FAIL.split("# %%\nx = 1")[0])
    prof = project / "profiles" / "toy.yaml"
    prof.write_text(prof.read_text().replace("[01_toy]", "[00_other, 01_toy]"))
    assert runner.main(["run", "--profile", "toy", "-p", "threshold", "0.3"]) == 0
    result = json.loads((project / "runs" / "toy" / "01_toy" / "result.json").read_text())
    assert result["threshold"] == 0.3


def test_failure_names_the_cell_and_the_executed_notebook(project, capsys):
    rc = runner.main(["run", "--profile", "toy", "--only", "02"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "02_fail failed" in err
    assert "code cell 3" in err and "ValueError" in err and "boom in the second cell" in err
    assert str(project / "runs" / "toy" / "02_fail" / "02_fail.failed.ipynb") in err


def test_a_failed_run_keeps_the_last_good_executed_notebook(project, capsys):
    assert runner.main(["run", "--profile", "toy"]) == 0
    out = project / "runs" / "toy" / "01_toy"
    good = (out / "01_toy.ipynb").read_text()
    nb = project / "notebooks" / "01_toy.py"
    nb.write_text(nb.read_text() + "\n# %%\nraise RuntimeError('broken edit')\n")
    assert runner.main(["run", "--profile", "toy"]) == 1
    assert (out / "01_toy.ipynb").read_text() == good
    assert (out / "01_toy.failed.ipynb").is_file() and (out / "01_toy.failed.html").is_file()
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_an_out_dir_parameter_is_where_the_runner_keeps_the_manifest(project):
    assert runner.main(["run", "--profile", "toy", "-p", "01.out_dir", "elsewhere"]) == 0
    assert json.loads((project / "elsewhere" / "manifest.json").read_text())["status"] == "done"
    assert (project / "elsewhere" / "01_toy.ipynb").is_file()


def test_unknown_profile_is_one_clear_line(project, capsys):
    assert runner.main(["run", "--profile", "toyy"]) == 2
    err = capsys.readouterr().err
    assert "profile 'toyy'" in err and "Available profiles: ['toy']" in err
    assert "Traceback" not in err


def test_sweep_writes_one_folder_per_value(project):
    rc = runner.main(["sweep", "01", "threshold", "0.7", "0.9", "--profile", "toy"])
    assert rc == 0
    base = project / "runs" / "toy" / "sweeps" / "01_toy" / "threshold"
    for v in ("0.7", "0.9"):
        assert json.loads((base / f"threshold={v}" / "result.json").read_text())["threshold"] == float(v)
    index = json.loads((base / "sweep.json").read_text())
    assert [r["value"] for r in index["runs"]] == [0.7, 0.9]


def test_a_sweep_over_an_unknown_parameter_leaves_no_folder(project):
    """Refused before anything is made (issue 13 item 8: it used to leave an empty folder)."""
    with pytest.raises(SystemExit, match="'treshold' is declared by none"):
        runner.main(["sweep", "01", "treshold", "0.7", "0.9", "--profile", "toy"])
    with pytest.raises(SystemExit, match="01_toy declares no"):
        runner.main(["sweep", "01", "threshold", "0.7", "--profile", "toy", "-p", "01.nope", "1"])
    assert not (project / "runs").exists() and not (project / "figures").exists()


_KILLED_WRITER = """
import os, signal, sys
from laionet.util.files import atomic_path
with atomic_path(sys.argv[1], suffix=sys.argv[2]) as tmp:
    tmp.write_text("half written")
    os.kill(os.getpid(), signal.SIGKILL)  # a hard kill between the write and the rename
"""


def test_a_stage_start_removes_the_temp_files_a_hard_kill_left(project, capsys):
    out = project / "runs" / "toy" / "01_toy"
    for dest, suffix in ((out / "result.json", ""), (out / "sub" / "emb.npy", ".npy")):
        r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(dest), suffix], check=False)
        assert r.returncode == -9
    stray = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert len(stray) == 2 and all(n.startswith(".") and ".tmp" in n for n in stray), stray
    (out / "sub" / "notes.tmp.txt").write_text("a user's file, not a temp file of ours")
    assert runner.main(["run", "--profile", "toy"]) == 0
    assert "removed 2 temporary file(s) a killed run left" in capsys.readouterr().out
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name)
    assert left == ["sub/notes.tmp.txt"]
    assert json.loads((out / "result.json").read_text())["label"] == "from-profile"


def toy_sweep_table(index_path):
    import pandas as pd

    index = json.loads(Path(index_path).read_text())
    return pd.DataFrame([{index["param"]: r["value"],
                          **json.loads((Path(r["out_dir"]) / "result.json").read_text())}
                         for r in index["runs"]])


def toy_sweep_figure(table, param):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(table[param], table["threshold"], "o-")
    return fig


def test_sweep_summary_table_and_figure(project, monkeypatch):
    from laionet.pipeline import sweeps

    monkeypatch.setitem(sweeps.SUMMARIES, "01_toy", (toy_sweep_table, toy_sweep_figure))
    assert runner.main(["sweep", "01", "threshold", "0.1", "0.2", "--profile", "toy"]) == 0
    figs = project / "figures" / "toy" / "sweeps" / "01_toy" / "threshold"
    assert (figs / "sweep_summary.png").is_file() and (figs / "sweep_summary.pdf").is_file()
    assert "0.2" in (figs / "sweep_summary.csv").read_text()


def test_parse_value_is_yaml():
    assert runner.parse_value("0.82") == 0.82
    assert runner.parse_value("true") is True
    assert runner.parse_value("[a, b]") == ["a", "b"]
    assert runner.parse_value("runs/x/*.parquet") == "runs/x/*.parquet"


def test_run_all_sh_help_runs_without_an_environment():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["bash", str(root / "run_all.sh"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "./run_all.sh test" in out and "sweep" in out


def test_cli_override_nobody_declares_is_an_error(project):
    with pytest.raises(SystemExit, match="'treshold' is declared by none"):
        runner.main(["run", "--profile", "toy", "-p", "treshold", "0.1"])


def test_unknown_profile_key_is_an_error(project):
    prof = project / "profiles" / "toy.yaml"
    prof.write_text(prof.read_text().replace("{threshold: 0.25}", "{threshold: 0.25, unrelated: 3}"))
    with pytest.raises(SystemExit, match="'unrelated' is declared by none"):
        runner.main(["run", "--profile", "toy"])
    prof.write_text(prof.read_text().replace("unrelated: 3}", "}\nlabels: 1"))
    with pytest.raises(SystemExit, match="unknown top-level key"):
        runner.main(["run", "--profile", "toy"])


def test_scoped_override_reaches_only_its_notebook(project):
    (project / "notebooks" / "03_twin.py").write_text(NOTEBOOK_OK.replace("01_toy", "03_twin")
                                                     .replace("# a label", "# another label"))
    prof = project / "profiles" / "toy.yaml"
    prof.write_text(prof.read_text().replace("[01_toy]", "[01_toy, 03_twin]"))
    with pytest.raises(SystemExit, match="'label' means different things in"):
        # 'label' is declared by two notebooks and is not a shared name: it must be scoped
        runner.main(["run", "--profile", "toy", "-p", "label", "x"])
    assert runner.main(["run", "--profile", "toy", "-p", "03.label", "scoped"]) == 0
    res = {s: json.loads((project / "runs" / "toy" / s / "result.json").read_text())["label"]
           for s in ("01_toy", "03_twin")}
    assert res == {"01_toy": "from-profile", "03_twin": "scoped"}


def test_wrong_type_is_refused_before_any_kernel_starts(project, capsys):
    rc = runner.main(["run", "--profile", "toy", "-p", "threshold", "abc"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "01_toy not started" in err and "threshold must be float" in err
    assert not (project / "runs" / "toy" / "01_toy" / "01_toy.ipynb").exists()


def test_out_of_range_value_is_refused_before_any_kernel_starts(project, capsys):
    assert runner.main(["run", "--profile", "toy", "-p", "threshold", "1.5"]) == 1
    err = capsys.readouterr().err
    assert "threshold=1.5 is not allowed: it must be in [-1.0, 1.0]" in err
    assert not (project / "runs" / "toy" / "01_toy" / "01_toy.ipynb").exists()


def test_choice_sets_match_the_library():
    from laionet.paper import NSFW_RULES
    from laionet.pipeline import stages
    from laionet.sources.classes import QUERY_COLUMNS

    assert stages.CHOICES["nsfw_rule"] == tuple(NSFW_RULES)
    assert stages.CHOICES["query"] == tuple(QUERY_COLUMNS)
    assert stages.allowed("ci_method", "bootstrap") is None
    assert "one of" in stages.allowed("ci_method", "bootstrp")


def test_second_run_skips_and_a_changed_parameter_reruns(project, capsys):
    assert runner.main(["run", "--profile", "toy"]) == 0
    assert runner.main(["run", "--profile", "toy"]) == 0
    assert "01_toy: up to date" in capsys.readouterr().out
    assert runner.main(["run", "--profile", "toy", "-p", "threshold", "0.5"]) == 0
    out = project / "runs" / "toy" / "01_toy"
    assert json.loads((out / "result.json").read_text())["threshold"] == 0.5
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "done" and man["params"]["threshold"] == 0.5
    assert man["params"]["label"] == "from-profile" and "versions" in man


@pytest.mark.parametrize("profile", ["demo", "tiny", "full", "full-corrected", "rehearsal"])
def test_shipped_profiles_only_set_declared_parameters(profile, tmp_path):
    from laionet.pipeline.profiles import load_profile

    root = Path(__file__).resolve().parents[1]
    prof = load_profile(str(root / "profiles" / f"{profile}.yaml"))  # `extends` merged
    declared = {}
    for stem in prof["notebooks"]:
        path = root / "notebooks" / f"{stem}.py"
        assert path.is_file(), f"{profile}.yaml lists {stem}, which does not exist"
        declared[stem] = set(read_parameters(path))
    assert set(prof["parameters"]) <= set().union(*declared.values())
    for stem, params in (prof.get("notebook_parameters") or {}).items():
        assert set(params) <= declared[stem], f"{profile}.yaml: {stem} does not declare {set(params) - declared[stem]}"


def test_every_notebook_declares_typed_documented_parameters():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.py")):
        params = read_parameters(path)  # papermill's reading; a line it cannot read is an error
        assert {"profile", "out_dir", "figures_dir"} <= set(params), path.name
        assert all(p.help for p in params.values()), f"{path.name}: a parameter without a comment"


_CELL = '''\
# %% [markdown]
# A cell of every kind.

# %% tags=["parameters"]
name: str = "a: b"  # a string
n: int = 3             # an int
x: float = 0.5         # a float; its help goes on
                       # on the next line
flag: bool = False     # a bool
items: list = [1,
               "two"]  # a list over two lines
opts: dict = {"k": [1, 2]}  # a dict

# %%
print(name)
'''


def test_the_parameters_cell_is_read_by_papermill_with_types_defaults_and_help(tmp_path):
    nb = tmp_path / "01_cell.py"
    nb.write_text(_CELL)
    got = {k: (p.type, p.default, p.help) for k, p in read_parameters(nb).items()}
    assert got == {"name": ("str", "a: b", "a string"), "n": ("int", 3, "an int"),
                   "x": ("float", 0.5, "a float; its help goes on on the next line"),
                   "flag": ("bool", False, "a bool"), "items": ("list", [1, "two"], "a list over two lines"),
                   "opts": ("dict", {"k": [1, 2]}, "a dict")}
    for bad, why in (('s: str = "a=b"  # two =', "papermill cannot read"),
                     ("t: tuple = (1,)  # a tuple", "has type tuple"),
                     ("u: str = os.sep  # a name", "not a literal"),
                     ('v: str = "#1"  # a hash', "keep # out of defaults")):
        nb.write_text(_CELL.replace("flag: bool = False     # a bool", bad))
        with pytest.raises(ValueError, match=why):
            read_parameters(nb)


_SLOW = '''\
# %% tags=["parameters"]
profile: str = "demo"  # profile name
out_dir: str = ""  # run folder override
figures_dir: str = ""  # figure folder override

# %%
import time
from laionet.pipeline.stage import open_stage
S = open_stage("03_slow", globals())
(S.out / "started").write_text("")
while not (S.out / "go").exists():
    time.sleep(0.1)
'''


def test_a_second_run_of_the_profile_waits_for_the_first_and_reuses_its_work(project, capsys):
    import os

    (project / "notebooks" / "03_slow.py").write_text(_SLOW)
    out = project / "runs" / "toy" / "03_slow"
    env = {**os.environ, "LAIONET_ROOT": str(project)}
    cmd = [sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "toy", "--only", "03"]
    first = subprocess.Popen(cmd, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    second = None
    try:
        deadline = time.monotonic() + 240
        while not (out / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
            time.sleep(0.2)
        # --no-wait: refused at once, naming who holds the lock
        assert runner.main(["run", "--profile", "toy", "--only", "03", "--no-wait"]) == runner.ALREADY_RUNNING
        err = capsys.readouterr().err
        assert f"profile 'toy' is already running (pid {first.pid}, `run_all.sh run --profile toy " \
               "--only 03`, since " in err, err
        # without it: waits, then finds the stage the first run made up to date
        second = subprocess.Popen(cmd, env=env, cwd=project, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        waited = second.stdout.readline()
        assert f"is already running (pid {first.pid}" in waited and "waiting for it" in waited, waited
        (out / "go").write_text("")
        assert first.wait(timeout=240) == 0
        rest = second.communicate(timeout=240)[0]
        assert second.returncode == 0 and "03_slow: up to date" in rest, rest
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not (project / "runs" / "toy" / ".lock.json").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def _apt_install_in_bash(tmp_path, env_extra):
    """Run run_all.sh's own apt_install function (cut out of the script, so nothing else of it
    runs) with an ``apt-get`` stub first on PATH that records what it was asked to do."""
    import os
    import re

    script = (Path(__file__).resolve().parents[1] / "run_all.sh").read_text()
    func = re.search(r"^apt_install\(\) \{.*?^\}$", script, re.DOTALL | re.MULTILINE)
    assert func, "run_all.sh defines apt_install()"
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    log = tmp_path / "apt.log"
    for name in ("apt-get", "id"):
        body = {"apt-get": f'echo "apt-get $*" >> {log}', "id": "echo 0"}[name]
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", **env_extra}
    r = subprocess.run(["bash", "-c", func.group(0) + '\napt_install "WordNet 3.0 (synset texts)" '
                        'wordnet-base; echo "rc=$?"'], capture_output=True, text=True, env=env, check=False)
    return r.stdout, log.read_text() if log.exists() else ""


def test_apt_install_says_what_and_why_and_honours_laionet_no_apt(tmp_path):
    out, apt = _apt_install_in_bash(tmp_path / "no", {"LAIONET_NO_APT": "1"})
    assert "WordNet 3.0 (synset texts) needs the Debian package(s) wordnet-base" in out
    assert "LAIONET_NO_APT=1, so not installing them" in out and "rc=1" in out
    assert apt == "", "nothing installed"
    out, apt = _apt_install_in_bash(tmp_path / "yes", {"LAIONET_NO_APT": "0"})
    assert "installing them with apt-get (set LAIONET_NO_APT=1 to skip)" in out and "rc=0" in out
    assert apt == "apt-get install -y -qq wordnet-base\n"
