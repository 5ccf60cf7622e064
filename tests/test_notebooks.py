"""Smoke run of every notebook of the `tiny` profile through the real runner (papermill kernels).

The run (the session fixture ``tiny_run`` in conftest.py, shared with the report and browser
tests) happens in a scratch project folder (symlinks to notebooks/, profiles/ and
pyproject.toml), so it starts from nothing, like a clean clone, and leaves the checkout's runs/
alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from laionet import runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_profile_runs_end_to_end(tiny_run):
    rc, scratch = tiny_run
    assert rc == 0, "a notebook failed: see the [run_all] FAILED message above"
    profile = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    timings = json.loads((scratch / "runs" / "tiny" / "run_all_timings.json").read_text())
    assert list(timings["timings_s"]) == profile["notebooks"]
    for stem in profile["notebooks"]:
        out = scratch / "runs" / "tiny" / stem
        assert (out / f"{stem}.ipynb").is_file(), stem
        assert (out / f"{stem}.html").is_file(), stem


@pytest.mark.slow
def test_tiny_profile_figures_come_in_png_and_pdf(tiny_run):
    rc, scratch = tiny_run
    assert rc == 0
    figs = scratch / "figures" / "tiny"
    pngs = {p.relative_to(figs).with_suffix("") for p in figs.rglob("*.png")}
    pdfs = {p.relative_to(figs).with_suffix("") for p in figs.rglob("*.pdf")}
    assert pngs, "no figure was written"
    assert pngs == pdfs


@pytest.mark.slow
def test_every_file_of_the_figures_index_is_made(tiny_run):
    """docs/FIGURES.md names each figure/table file; the tiny run must produce all of them."""
    import re

    rc, scratch = tiny_run
    assert rc == 0
    names = set(re.findall(r"`(0\d_[A-Za-z0-9_<>\-]+)`", (ROOT / "docs" / "FIGURES.md").read_text()))
    assert len(names) > 40
    made = {p.stem for p in (scratch / "figures" / "tiny").iterdir()}
    missing = [n for n in sorted(names)
               if not any(re.fullmatch(n.replace("<encoder>", ".+"), m) for m in made)]
    assert not missing, f"named in docs/FIGURES.md but not made by the tiny run: {missing}"


@pytest.mark.slow
def test_every_stage_has_a_done_manifest_with_its_products(tiny_run):
    from laionet import stages

    rc, scratch = tiny_run
    assert rc == 0
    profile = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    for stem in profile["notebooks"]:
        man = json.loads((scratch / "runs" / "tiny" / stem / "manifest.json").read_text())
        assert man["status"] == "done", stem
        assert man["stage"] == stem and man["fingerprint"] and man["versions"]["laionet"]
        assert set(man["input_fingerprints"]) == {i.name for i in stages.spec(stem).inputs}, stem
        assert len(man["products"]) == len(stages.spec(stem).products), stem
        assert man["timings_s"]["total"] > 0, stem


@pytest.mark.slow
def test_a_second_run_skips_every_stage_and_says_so(tiny_run, capsys):
    import time

    rc, scratch = tiny_run
    assert rc == 0
    old = os.environ.get("LAIONET_ROOT")
    os.environ["LAIONET_ROOT"] = str(scratch)
    try:
        capsys.readouterr()
        t0 = time.perf_counter()
        assert runner.main(["run", "--profile", "tiny"]) == 0
        took = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("LAIONET_ROOT", None)
        else:
            os.environ["LAIONET_ROOT"] = old
    out = capsys.readouterr().out
    profile = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    for stem in profile["notebooks"]:
        assert f"{stem}: up to date" in out, stem
    assert "params=" not in out, "a stage ran again although nothing changed"
    assert took < 60, f"a run with nothing to do took {took:.0f} s"


@pytest.mark.slow
def test_stage_02_streamed_outputs_equal_the_in_memory_pipeline(tiny_run):
    """Stage 02 now works part by part (issue 11); on the tiny profile its products equal what
    the whole-table code it replaced gives from the same stage-01 outputs (load_candidates +
    add_similarity through the same store: every caption is a hit, nothing is re-embedded)."""
    import pandas as pd

    from laionet import classes as lc
    from laionet import selection
    from laionet.embedding_store import EmbeddingStore
    from laionet.encoders import load_text_encoder

    rc, scratch = tiny_run
    assert rc == 0
    runs = scratch / "runs" / "tiny"
    man = json.loads((runs / "02_caption_filtering" / "manifest.json").read_text())
    params, inputs = man["params"], man["inputs"]
    enc = load_text_encoder(params["text_encoder"])
    store = EmbeddingStore(runs / "cache" / "text_embeddings" / "laion" / enc.name, enc.name)
    ref, _ = selection.load_candidates(runs / "01_synset_matching", inputs["laion_parts"])
    texts = selection.synset_texts(lc.class_table(inputs["classes"]), params["query"])
    ref = selection.add_similarity(ref, texts, enc, store)[selection.CANDIDATE_COLUMNS]
    got = pd.read_parquet(runs / "02_caption_filtering" / "candidates.parquet")
    pd.testing.assert_frame_equal(got.assign(lemmas=got["lemmas"].map(list)),
                                  ref.assign(lemmas=ref["lemmas"].map(list)), check_dtype=False)
    laionet = pd.read_parquet(runs / "02_caption_filtering" / "laionet.parquet")
    want = selection.select_laionet(ref, params["threshold"], params["nsfw_rule"])
    assert laionet["key"].tolist() == want["key"].tolist()
