"""Profiles that inherit: ``extends`` merges the parent then the child (laionet.pipeline.profiles.load_profile)."""

from __future__ import annotations

import textwrap

import pytest

from laionet.pipeline import runner
from laionet.pipeline.profiles import ProfileError, ProfileNotFound, load_profile


def _write(root, name, text):
    (root / "profiles").mkdir(exist_ok=True)
    path = root / "profiles" / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='toy'\n")
    monkeypatch.setenv("LAIONET_ROOT", str(tmp_path))
    _write(tmp_path, "base", """\
        name: base
        description: the parent
        notebooks: [01_a, 02_b]
        parameters: {seed: 0, device: cuda, laion_parts: /data/part-*.parquet}
        notebook_parameters:
          01_a: {threshold: 0.82, sizes: [1, 2]}
          02_b: {k: 3}
        """)
    return tmp_path


def test_child_overrides_and_deep_merges_the_parent(root):
    _write(root, "lab", """\
        extends: base
        parameters: {device: cpu}
        notebook_parameters:
          01_a: {threshold: 0.58, sizes: [5]}
        """)
    p = load_profile("lab")
    assert p["name"] == "lab" and p["extends"] == ["lab", "base"]
    assert p["notebooks"] == ["01_a", "02_b"]                      # inherited: the child gives none
    assert p["parameters"] == {"seed": 0, "device": "cpu", "laion_parts": "/data/part-*.parquet"}
    assert p["notebook_parameters"]["01_a"] == {"threshold": 0.58, "sizes": [5]}  # lists replace
    assert p["notebook_parameters"]["02_b"] == {"k": 3}
    assert "description" not in p                                  # the parent's does not describe the child


def test_child_notebooks_replace_and_chains_resolve_in_order(root):
    _write(root, "mid", "extends: base\nparameters: {seed: 1}\nnotebooks: [02_b]\n")
    sub = root / "elsewhere"
    sub.mkdir()
    (sub / "leaf.yaml").write_text("extends: ../profiles/mid.yaml\nparameters: {seed: 2, device: tpu}\n")
    p = load_profile(str(sub / "leaf.yaml"))
    assert p["extends"] == ["leaf", "mid", "base"]
    assert p["notebooks"] == ["02_b"]
    assert p["parameters"]["seed"] == 2 and p["parameters"]["device"] == "tpu"
    assert p["parameters"]["laion_parts"] == "/data/part-*.parquet"


def test_a_cycle_is_a_clear_error(root):
    _write(root, "x", "extends: y\n")
    _write(root, "y", "extends: x\n")
    with pytest.raises(ProfileError, match=r"cycle: x -> y -> x"):
        load_profile("x")


def test_a_missing_parent_names_the_child_and_the_parent(root):
    child = _write(root, "orphan", "extends: nosuch\n")
    with pytest.raises(ProfileNotFound, match=rf"{child}: extends 'nosuch'.*nosuch.yaml does not exist"):
        load_profile("orphan")


def test_runner_list_shows_the_merged_profile(tmp_path, monkeypatch, capsys):
    """The real full profile under a lab profile that only changes a path and the device."""
    from laionet.util.paths import project_root

    (tmp_path / "lab.yaml").write_text("extends: full\nparameters: {device: cpu, laion_parts: /lab/*.parquet}\n")
    monkeypatch.setenv("LAIONET_ROOT", str(project_root()))
    assert runner.main(["list", "--profile", str(tmp_path / "lab.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("profile lab <- full")
    assert "laion_parts: str = '/lab/*.parquet'  [profile]" in out
    assert "device: str = 'cpu'  [profile]" in out
    assert "threshold: float = 0.82  [profile]" in out            # 02's, inherited from full
    assert "09_text_retrieved_imagenet" in out


def test_runner_reports_a_cycle_in_one_line(root, capsys):
    _write(root, "x", "extends: x\n")
    assert runner.main(["list", "--profile", "x"]) == 2
    assert "cycle: x -> x" in capsys.readouterr().err


@pytest.mark.parametrize("stage, param, extra", [
    ("01", "laion_parts", {}),
    ("05", "imagenet_val_dir", {"download_dir": ".", "laionet_path": "pyproject.toml"}),
    ("06", "imagenetv2_root", {"similarity_dir": ".", "download_dir": "."}),
    ("08", "captions_json", {"laionet_path": "pyproject.toml"}),
])
def test_a_wrong_path_in_a_lab_profile_names_the_parameter_and_the_file(stage, param, extra, tmp_path,
                                                                       monkeypatch, capsys):
    """README 'Running on your data': a lab profile is `extends: full` plus paths; a wrong one is
    refused before any kernel starts, naming the parameter and the file."""
    from laionet.util.paths import project_root

    monkeypatch.setenv("LAIONET_ROOT", str(project_root()))
    wrong = tmp_path / "nowhere" / ("part-*.parquet" if param == "laion_parts" else "x")
    where = "parameters" if param != "imagenetv2_root" else "notebook_parameters"
    body = (f"parameters: {{{param}: {wrong}}}\n" if where == "parameters" else
            f"notebook_parameters: {{06_imagenetv2_selection_frequency: {{{param}: {wrong}}}}}\n")
    lab = tmp_path / "lab.yaml"
    lab.write_text("extends: full\n" + body)
    args = ["run", "--profile", str(lab), "--only", stage]
    for k, v in extra.items():
        args += ["-p", f"{stage}.{k}", str(project_root() / v)]
    assert runner.main(args) == 1
    err = capsys.readouterr().err
    assert "not started" in err and param in err and str(wrong) in err, err
