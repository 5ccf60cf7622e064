"""The stage contract (laionet.pipeline.stage + laionet.pipeline.stages): input resolution, errors, fingerprints,
the runner-owned manifest, skip and clean-up rules. Toy projects, no kernels."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from laionet.pipeline import stage, stages
from laionet.pipeline.stage import MissingInput, plan_stage, resolve_inputs


def _project(root: Path, with_world: bool) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname='toy'\n")
    (root / "profiles").mkdir()
    nbs = ["00_demo_world"] if with_world else []
    nbs += ["01_synset_matching", "02_caption_filtering"]
    (root / "profiles" / "p.yaml").write_text(f"name: p\nnotebooks: {nbs}\n")
    return root


@pytest.fixture
def world_project(tmp_path, monkeypatch):
    root = _project(tmp_path, with_world=True)
    world = root / "runs" / "p" / "00_demo_world" / "world"
    (world / "laion").mkdir(parents=True)
    (world / "laion" / "part-00000.parquet").write_bytes(b"x")
    (world / "classes.txt").write_text("n01440764\n")
    (world / "world.json").write_text("{}")
    monkeypatch.setenv("LAIONET_ROOT", str(root))
    return root


@pytest.fixture
def real_project(tmp_path, monkeypatch):
    root = _project(tmp_path, with_world=False)
    monkeypatch.setenv("LAIONET_ROOT", str(root))
    return root


def test_world_fills_inputs_and_explicit_values_win(world_project):
    world = world_project / "runs" / "p" / "00_demo_world" / "world"
    got = resolve_inputs("01_synset_matching", {"laion_parts": "", "classes": ""}, "p")
    assert got["laion_parts"] == str(world / "laion" / "part-*.parquet")
    assert got["classes"] == str(world / "classes.txt")
    mine = world_project / "mine"
    mine.mkdir()
    (mine / "part-00007.parquet").write_bytes(b"y")
    (mine / "wnids.txt").write_text("n01443537\n")
    got = resolve_inputs("01_synset_matching", {"laion_parts": "mine/*.parquet",
                                                "classes": "mine/wnids.txt"}, "p")
    assert got == {"laion_parts": str(mine / "*.parquet"), "classes": str(mine / "wnids.txt")}


def test_a_world_not_built_yet_says_to_run_00(world_project):
    (world_project / "runs" / "p" / "00_demo_world" / "world" / "world.json").unlink()
    with pytest.raises(MissingInput, match="not built yet.*--only 00"):
        resolve_inputs("01_synset_matching", {"laion_parts": "", "classes": ""}, "p")


def test_fallback_without_a_world(real_project):
    parts = real_project / "laion"
    parts.mkdir()
    (parts / "part-00000.parquet").write_bytes(b"x")
    got = resolve_inputs("01_synset_matching", {"laion_parts": str(parts / "*.parquet"), "classes": ""}, "p")
    assert got["classes"] == "imagenet1k"


def test_missing_input_without_a_world_names_the_parameter(real_project):
    with pytest.raises(MissingInput, match="needs laion_parts, which is not set and this profile "
                                           "has no demo world"):
        resolve_inputs("01_synset_matching", {"laion_parts": "", "classes": ""}, "p")
    with pytest.raises(MissingInput, match="matches no file"):
        resolve_inputs("01_synset_matching", {"laion_parts": "nowhere/*.parquet"}, "p")


def test_missing_upstream_product_names_the_notebook_that_makes_it(world_project):
    with pytest.raises(MissingInput) as err:
        resolve_inputs("02_caption_filtering", {"matches_dir": "", "laion_parts": "", "classes": ""}, "p")
    msg = str(err.value)
    assert "02_caption_filtering needs matches_dir" in msg
    assert "notebook 01_synset_matching makes it" in msg and "--only 01" in msg
    up = world_project / "runs" / "p" / "01_synset_matching"
    up.mkdir(parents=True)
    got = resolve_inputs("02_caption_filtering", {"matches_dir": ""}, "p")
    assert got["matches_dir"] == up
    assert got["truth"] is None  # optional world input: absent in this world


def _toy_spec(monkeypatch):
    spec = stages.StageSpec("01_synset_matching", "toy", inputs=(stages.LAION_PARTS,),
                            products=("matches", "summary_{k}.json"))
    monkeypatch.setitem(stages.STAGES, "01_synset_matching", spec)
    return spec


def test_plan_skips_when_current_and_reruns_on_a_changed_parameter_or_input(world_project, monkeypatch):
    _toy_spec(monkeypatch)
    params = {"laion_parts": "", "k": 1}
    plan = plan_stage("01_synset_matching", params, "p")
    assert not plan.current()
    plan.begin()
    (plan.out / "matches").mkdir()
    (plan.out / "summary_1.json").write_text("{}")
    plan.finish(1.0)
    man = json.loads((plan.out / "manifest.json").read_text())
    assert man["status"] == "done" and set(man["products"]) == {"matches", "summary_1.json"}
    assert man["params"]["k"] == 1 and man["input_fingerprints"]["laion_parts"]
    assert plan_stage("01_synset_matching", params, "p").current()
    assert plan_stage("01_synset_matching", {**params, "n_workers": 8}, "p").current()  # how, not what
    assert not plan_stage("01_synset_matching", {**params, "k": 2}, "p").current()
    part = world_project / "runs" / "p" / "00_demo_world" / "world" / "laion" / "part-00000.parquet"
    part.write_bytes(b"changed")  # same name, other bytes: the input changed
    assert not plan_stage("01_synset_matching", params, "p").current()


def test_changed_fingerprint_removes_old_products_but_a_resumed_run_keeps_them(world_project, monkeypatch):
    _toy_spec(monkeypatch)
    params = {"laion_parts": "", "k": 1}
    plan = plan_stage("01_synset_matching", params, "p")
    plan.begin()
    (plan.out / "matches").mkdir()
    (plan.out / "matches" / "part-00000.parquet").write_text("half done")
    # killed here: status stays 'running' with the same fingerprint -> the rerun resumes
    again = plan_stage("01_synset_matching", params, "p")
    assert again.recorded["status"] == "running" and not again.current()
    assert again.begin() == []
    assert (plan.out / "matches" / "part-00000.parquet").is_file()
    # another parameter: the old products must not mix with the new run's
    other = plan_stage("01_synset_matching", {**params, "k": 2}, "p")
    assert other.begin() == ["matches"]
    assert not (plan.out / "matches").exists()


def test_finish_refuses_a_run_that_did_not_make_its_products(world_project, monkeypatch):
    _toy_spec(monkeypatch)
    plan = plan_stage("01_synset_matching", {"laion_parts": "", "k": 1}, "p")
    plan.begin()
    with pytest.raises(RuntimeError, match="declared products"):
        plan.finish(1.0)
    assert json.loads((plan.out / "manifest.json").read_text())["status"] == "failed"


def test_downstream_refuses_an_unfinished_upstream(world_project):
    up = world_project / "runs" / "p" / "01_synset_matching"
    up.mkdir(parents=True)
    (up / "manifest.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(MissingInput, match="did not finish"):
        plan_stage("02_caption_filtering", {"matches_dir": "", "laion_parts": "", "classes": "", "top_k": 50}, "p")


def test_open_stage_in_a_notebook_namespace(world_project):
    nb = world_project / "notebooks"
    nb.mkdir()
    (nb / "01_synset_matching.py").write_text(textwrap.dedent('''\
        # %% tags=["parameters"]
        profile: str = "demo"  # profile
        out_dir: str = ""  # out
        figures_dir: str = ""  # figures
        laion_parts: str = ""  # parts
        classes: str = ""  # classes
        '''))
    S = stage.open_stage("01_synset_matching", {"profile": "p", "out_dir": "", "figures_dir": "",
                                                "laion_parts": "", "classes": "", "other": 1})
    assert S.out == world_project / "runs" / "p" / "01_synset_matching" and S.out.is_dir()
    assert S.figures == world_project / "figures" / "p"
    assert S.inputs.classes.endswith("classes.txt") and S.world is not None
    assert "other" not in S.params
    with S.timings("work"):
        pass
    assert "work" in json.loads((S.out / stage.STATE_DIR / "timings.json").read_text())
    with pytest.raises(KeyError, match="declares no cache"):
        S.cache_dir("image_embeddings")
    with pytest.raises(AttributeError, match="no input"):
        S.inputs.nope
    step = S.step("sub", uses=["classes"])
    assert not step.current()
    step.done()
    assert S.step("sub", uses=["classes"]).current()


def test_every_declared_stage_has_its_notebook_and_world_keys_exist():
    from laionet.demo.layout import WORLD

    root = Path(__file__).resolve().parents[1]
    for name, spec in stages.STAGES.items():
        assert (root / "notebooks" / f"{name}.py").is_file(), name
        for inp in spec.inputs:
            assert inp.world is None or inp.world in WORLD, (name, inp.name)
            assert inp.upstream is None or inp.upstream in stages.STAGES, (name, inp.name)


def test_input_parameters_default_to_empty():
    """An input a notebook sets by default could never resolve from upstream or the world."""
    from laionet.pipeline.params import read_parameters

    root = Path(__file__).resolve().parents[1]
    for name, spec in stages.STAGES.items():
        declared = read_parameters(root / "notebooks" / f"{name}.py")
        for inp in spec.inputs:
            if inp.param and inp.name in declared:
                assert declared[inp.name].default in ("", []), f"{name}: {inp.name} must default to empty"


# ------------------------------------------------------------------ what a change invalidates
# Issue 13: a changed caption, a changed image and a removed part each invalidate exactly the
# stages that depend on them (the real declarations of 01, 02, 03 and 05, no kernels). At the
# row level the caches do the same: a changed caption or image is embedded again, alone
# (test_embedding_store / test_similarity: test_a_changed_caption..., test_an_image_replaced...).

P01 = {"laion_parts": "", "classes": ""}
P02 = {"matches_dir": "", "laion_parts": "", "classes": "", "top_k": 50}
P03 = {"laionet_path": ""}


def _p05(root: Path) -> dict:
    return {"download_dir": "", "laionet_path": "", "imagenet_val_dir": "",
            "imagenet_devkit_dir": "", "imagenet_ground_truth": "", "eval_dir": "",
            "image_encoders": [f"demo-tower:{root / 'tower.safetensors'}"]}


def _run_stage(name: str, params: dict, laionet: bytes = b"laionet v1") -> None:
    """What the runner does around a notebook, the notebook writing its declared products
    (stage 02's laionet.parquet with ``laionet`` as its bytes, through the atomic writer)."""
    from laionet.util.files import atomic_path

    plan = plan_stage(name, params, "p")
    plan.begin()
    for rel in plan.products:
        target = plan.out / rel
        if "." not in rel:
            (target / "x").parent.mkdir(parents=True, exist_ok=True)
            (target / "x").write_text(name)
        else:
            with atomic_path(target, keep_same=True) as tmp:
                tmp.write_bytes(laionet if rel == "laionet.parquet" else name.encode())
    plan.finish(1.0)


def _current(root: Path) -> dict[str, bool]:
    return {name[:2]: plan_stage(name, params, "p").current() for name, params in
            (("01_synset_matching", P01), ("02_caption_filtering", P02),
             ("03_download", P03), ("05_intra_class_similarity", _p05(root)))}


@pytest.fixture
def pipeline(world_project):
    world = world_project / "runs" / "p" / "00_demo_world" / "world"
    (world / "laion" / "part-00001.parquet").write_bytes(b"part 1: a lion in the grass")
    for folder, name in ((world / "imagenet" / "val", "ILSVRC2012_val_00000001.JPEG"),
                         (world / "imagenet" / "devkit", "meta.txt")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"an image")
    (world_project / "tower.safetensors").write_bytes(b"weights")
    for name, params in (("01_synset_matching", P01), ("02_caption_filtering", P02),
                         ("03_download", P03), ("05_intra_class_similarity", _p05(world_project))):
        _run_stage(name, params)
    assert _current(world_project) == {"01": True, "02": True, "03": True, "05": True}
    return world_project, world


def test_a_changed_caption_reruns_01_and_02_and_downstream_only_if_laionet_changed(pipeline):
    root, world = pipeline
    (world / "laion" / "part-00001.parquet").write_bytes(b"part 1: a lion on the grass")
    assert _current(root) == {"01": False, "02": False, "03": True, "05": True}
    _run_stage("01_synset_matching", P01)
    _run_stage("02_caption_filtering", P02)  # the same LAIONet: the same bytes
    assert _current(root) == {"01": True, "02": True, "03": True, "05": True}
    (world / "laion" / "part-00001.parquet").write_bytes(b"part 1: a tiger on the grass")
    _run_stage("01_synset_matching", P01)
    _run_stage("02_caption_filtering", P02, laionet=b"laionet v2")  # this row changed LAIONet
    assert _current(root) == {"01": True, "02": True, "03": False, "05": False}


def test_a_changed_image_reruns_only_the_stages_reading_it(pipeline):
    root, world = pipeline
    (world / "imagenet" / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"another image")
    assert _current(root) == {"01": True, "02": True, "03": True, "05": False}


def test_a_removed_part_reruns_01_without_its_old_products_and_02(pipeline):
    root, world = pipeline
    out01 = root / "runs" / "p" / "01_synset_matching"
    (world / "laion" / "part-00001.parquet").unlink()
    assert _current(root) == {"01": False, "02": False, "03": True, "05": True}
    assert plan_stage("01_synset_matching", P01, "p").begin() == list(stages.spec(
        "01_synset_matching").products)  # nothing of the removed part is counted again
    assert not (out01 / "matches").exists() and not (out01 / "done").exists()
