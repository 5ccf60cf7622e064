"""The full profile rehearsed end to end on real assets (profiles/rehearsal.yaml).

The real COCO caption pairs become LAION-400M parts whose photos img2dataset downloads from
127.0.0.1, the real ImageNet val photos are labelled by a devkit-style ground truth, the
classifiers and Appendix-H encoders are the real EfficientNet-Lite0/1/2, the caption filter is
the real all-mpnet-base-v2 at the paper's 0.58, and the CLIP slots hold a random-weight ViT-B-32
whose figures say so. Notebooks 01-09 run through papermill kernels on their real-data
branches (no demo world), 07 in its absolute-threshold mode.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import REFERENCE
from laionet.demo import rehearsal
from laionet.pipeline.profiles import load_profile

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "coco-mini").is_dir(),
    reason=f"real reference assets not found at {REFERENCE} (../shared/reference or $LAIONET_REFERENCE)")

NOTEBOOKS = ["01_synset_matching", "02_caption_filtering", "03_download", "04_evaluation",
             "05_intra_class_similarity", "06_imagenetv2_selection_frequency",
             "07_image_to_selection_link", "08_text_alone", "09_text_retrieved_imagenet"]


def test_the_rehearsal_profile_is_full_plus_paths_weights_and_device():
    full, reh = load_profile("full"), load_profile("rehearsal")
    assert reh["extends"] == ["rehearsal", "full"]
    assert reh["notebooks"] == full["notebooks"] == NOTEBOOKS
    assert "00_demo_world" not in reh["notebooks"]                 # real-data branches only
    changed = {k for k in full["parameters"] if reh["parameters"][k] != full["parameters"][k]}
    assert changed <= {"laion_parts", "text_encoder", "image_encoder", "imagenet_val_dir",
                       "imagenet_devkit_dir", "captions_json", "device", "n_workers"}
    assert reh["parameters"]["device"] == "cpu"
    assert reh["notebook_parameters"]["02_caption_filtering"]["threshold"] == 0.58
    # 07 keeps full's absolute thresholds (no threshold_mode given anywhere)
    assert "threshold_mode" not in (reh["notebook_parameters"].get("07_image_to_selection_link") or {})


def _strict_json(path):
    """The file parsed as strict JSON (NaN or Infinity in it is an error)."""
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_notebooks_01_to_09_run_on_real_assets(rehearsal_run):
    rc, scratch = rehearsal_run
    info = json.loads((scratch / rehearsal.DEFAULT_OUT / "rehearsal.json").read_text())
    parts = sorted((scratch / rehearsal.DEFAULT_OUT / "laion").glob("part-*.parquet"))
    assert [p.name[:10] for p in parts] == ["part-00000", "part-00001"]
    assert list(pd.read_parquet(parts[0]).columns) == [
        "SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]
    assert rc == 0
    runs = scratch / "runs" / "rehearsal"
    timings = json.loads((runs / "run_all_timings.json").read_text())["timings_s"]
    assert list(timings) == NOTEBOOKS
    print("rehearsal seconds per notebook:", timings)
    for nb in NOTEBOOKS:
        manifest = json.loads((runs / nb / "manifest.json").read_text())
        assert manifest["status"] == "done", nb
        if "device" in manifest["params"]:  # the profile's device reaches every stage with an encoder
            assert manifest["params"]["device"] == "cpu", nb
    # 02: the real mpnet at 0.58 drops the COCO captions of the wrong sense (kite the toy, the
    # class is the hawk; pitcher the player, the class is the jug) and keeps some on-topic ones
    by_lemma = pd.read_csv(scratch / "figures" / "rehearsal" / "02_kept_dropped_by_lemma.csv").set_index("lemma")
    assert by_lemma.loc["kite", "n_candidates"] >= 5 and by_lemma.loc["kite", "n_kept"] == 0
    assert by_lemma.loc["pitcher", "n_kept"] == 0 and by_lemma["n_kept"].sum() > 0
    # 03: every COCO photo LAIONet kept was downloaded; every padding row is a recorded 404; the
    # recognised-text step read every downloaded photo
    man = pd.read_parquet(runs / "03_download" / "manifest.parquet").merge(
        pd.read_parquet(runs / "02_caption_filtering" / "laionet.parquet", columns=["key", "URL"]), on="key")
    coco = man["URL"].str.contains("/coco/")
    status = man["status"].astype(str)
    assert (status[coco] == "success").all() and len(status[coco]) > 0
    assert (status[~coco] != "success").all()
    text = pd.read_parquet(runs / "03_download" / "recognized_text.parquet")
    assert set(text["key"]) == set(man["key"]) and text["recognized_text"].notna().all()
    assert (text["recognized_text"] == "DOWNLOAD ERROR").sum() == (~coco).sum()
    # 04: the real classifiers classify the real val photos far above chance
    imnet = pd.read_parquet(runs / "04_evaluation" / "results_imagenet.parquet")
    lite = imnet[imnet["model"].str.startswith("efficientnet-lite")]
    assert lite["model"].nunique() == 3 and lite["correct1"].mean() > 0.6
    # figures of stages with a CLIP slot say "random weights" in their titles (PNG metadata)
    from PIL import Image

    figs = scratch / "figures" / "rehearsal"
    titles = {p.name: Image.open(p).info.get("Title", "") for p in figs.glob("0[4579]_*.png")}
    assert titles and all("random weights" in t for t in titles.values()), titles
    assert info["val_photos"] > 0
    # 07, absolute thresholds (full's 0.82 / 0.20) on the random CLIP: nothing passes the image
    # bar, so the datasets are empty, and 07 says so and goes on (B19, coverage, zero-shot)
    s07 = _strict_json(runs / "07_image_to_selection_link" / "summary.json")
    assert s07["n_ref"] == 0 and s07["summary"] == [] and s07["homogeneity_decreases_D_to_A"] is None
    assert len(pd.read_parquet(runs / "07_image_to_selection_link" / "datasets.parquet")) == 0
    assert len(pd.read_parquet(runs / "07_image_to_selection_link" / "image_similarity.parquet")) > 0
    assert (figs / "07_EXT_laionet_thresholds_coverage_vs_similarity.png").is_file()
    # the report's claims table: every claim, measured where the rehearsal has the stage's numbers
    claims = {c["claim"]: c for c in _strict_json(figs / "claims.json")["claims"]}
    assert claims["accuracy_drop_top1"]["n"] == 3 and claims["false_class_share"]["value"] is not None
    # 08: every (synthetic) ImageNet-Captions caption scored against the 1,000 class texts
    s08 = _strict_json(runs / "08_text_alone" / "summary.json")
    assert s08["n_captions"] == s08["n_with_p"] == info["train_photos"]
    # 09: the LAION parts indexed (exact at this size) and searched with the captions
    s09 = _strict_json(runs / "09_text_retrieved_imagenet" / "summary.json")
    assert s09["factory"] == "Flat" and s09["n_index"] == sum(info["laion_rows"].values())
    assert s09["n_queries"] == info["train_photos"] and s09["n_unique_retrieved"] > 0
