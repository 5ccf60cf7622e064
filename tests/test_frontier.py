"""§4.2 threshold frontier and datasets A-D on hand-built tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet.method import frontier as fr


@pytest.fixture
def table() -> pd.DataFrame:
    # 8 rows, 3 classes. Text and image similarities chosen so that every count is easy by hand.
    return pd.DataFrame({
        "wnid": ["a", "a", "a", "b", "b", "c", "c", "c"],
        "similarity":       [0.90, 0.85, 0.80, 0.80, 0.75, 0.70, 0.95, 0.60],
        "image_similarity": [0.10, 0.30, 0.50, 0.30, 0.40, 0.20, 0.60, np.nan],
    })


def test_reference_count_rules(table):
    # text >= 0.80 and image >= 0.30: rows 1, 2, 3, 6 -> 4 rows, classes a, b, c
    assert fr.reference_count(table, 0.80, 0.30, inclusive=True) == 4
    assert fr.reference_count(table, 0.80, 0.30, inclusive=True, unit="classes") == 3
    # strict: text > 0.80 and image > 0.30: rows 6 only (row 1 has image 0.30)
    assert fr.reference_count(table, 0.80, 0.30, inclusive=False) == 1
    with pytest.raises(ValueError, match="unit"):
        fr.reference_count(table, unit="images")


def test_threshold_for_count_ties_both_rules():
    v = np.array([0.1, 0.2, 0.2, 0.2, 0.5])
    # strict: thresholds 0.2 keeps 1, 0.1 keeps 4; target 3 -> 4 is closer (|4-3| < |3-1|)
    assert fr.threshold_for_count(v, 3, inclusive=False) == (0.1, 4)
    # target 2: 1 vs 4 -> 1 is closer
    assert fr.threshold_for_count(v, 2, inclusive=False) == (0.2, 1)
    # inclusive: >= 0.2 keeps 4, >= 0.5 keeps 1
    assert fr.threshold_for_count(v, 3, inclusive=True) == (0.2, 4)
    assert fr.threshold_for_count(v, 2, inclusive=True) == (0.5, 1)
    # keep everything: strict needs a value just below the minimum
    t, n = fr.threshold_for_count(v, 10, inclusive=False)
    assert n == 5 and t < 0.1 and (v > t).all()
    assert fr.threshold_for_count(v, 10, inclusive=True) == (0.1, 5)
    assert fr.threshold_for_count(np.array([]), 3) == (float("inf"), 0)


def test_threshold_for_count_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(200):
        v = np.round(rng.random(rng.integers(1, 30)), 1)  # rounding makes many ties
        target = int(rng.integers(0, 35))
        for inclusive in (False, True):
            thr, n = fr.threshold_for_count(v, target, inclusive)
            kept = (v >= thr) if inclusive else (v > thr)
            assert kept.sum() == n
            cands = np.r_[v, np.nextafter(v.min(), -1), np.inf]
            counts = [((v >= c) if inclusive else (v > c)).sum() for c in cands]
            assert abs(n - target) == min(abs(c - target) for c in counts), (v, target, inclusive)


def test_frontier_fixed_size_known_answer(table):
    f = fr.frontier_fixed_size(table, [0.70, 0.80], n_ref=2, inclusive=False)
    # t=0.70 (strict): rows with text > 0.70: images 0.1, 0.3, 0.5, 0.3, 0.4, 0.6 -> keep 2
    # largest (0.6, 0.5) with image > 0.4
    assert f.loc[0, "image_threshold"] == pytest.approx(0.4)
    assert f.loc[0, "n_rows"] == 2 and f.loc[0, "n_classes"] == 2
    # t=0.80 (strict): rows 0, 1, 6 -> images 0.1, 0.3, 0.6 -> image > 0.1 keeps 2
    assert f.loc[1, "image_threshold"] == pytest.approx(0.1)
    assert f.loc[1, "n_rows"] == 2
    fi = fr.frontier_fixed_size(table, [0.80], n_ref=3, inclusive=True)
    # text >= 0.80: images 0.1, 0.3, 0.5, 0.3, 0.6 -> >= 0.3 keeps 4, >= 0.5 keeps 2: tie
    # (both off by one) goes to the larger dataset
    assert fi.loc[0, "image_threshold"] == pytest.approx(0.3)
    assert fi.loc[0, "n_rows"] == 4
    assert list(fi.columns) == ["text_threshold", "image_threshold", "n_rows", "n_classes",
                                "target", "unit", "inclusive"]


def test_frontier_reproduces_reference_at_reference_text_threshold(table):
    n_ref = fr.reference_count(table, 0.75, 0.35, inclusive=False)
    f = fr.frontier_fixed_size(table, [0.75], n_ref)
    assert f.loc[0, "n_rows"] == n_ref
    rebuilt = fr.select(table, 0.75, f.loc[0, "image_threshold"])
    assert len(rebuilt) == n_ref


def test_frontier_fixed_classes(table):
    # text > 0.70: class maxima a 0.5, b 0.4, c 0.6 -> 2 classes with image > 0.4
    f = fr.frontier_fixed_classes(table, [0.70], n_classes_ref=2)
    assert f.loc[0, "image_threshold"] == pytest.approx(0.4)
    assert f.loc[0, "n_classes"] == 2 and f.loc[0, "unit"] == "classes"
    # a class needs 2 rows: second-largest per class a 0.3, b 0.3, c none -> 1 class needs > 0.3?
    # both a and b tie at 0.3, so the achievable counts are 0 or 2: target 1 -> the larger
    f2 = fr.frontier_fixed_classes(table, [0.70], n_classes_ref=1, min_rows_per_class=2)
    assert f2.loc[0, "n_classes"] == 2


def test_build_datasets_and_summary(table):
    f = fr.frontier_fixed_size(table, [0.70, 0.80], n_ref=2)
    ds = fr.build_datasets(table, f, picks=[0, 1], names=("D", "A"))
    assert list(ds["dataset"].cat.categories) == ["D", "A"]
    d = ds[ds["dataset"] == "D"]
    assert sorted(d["image_similarity"]) == [0.5, 0.6]
    s = fr.datasets_summary(ds)
    assert s["n_rows"].tolist() == [2, 2]
    ds2 = fr.build_datasets(table, f, picks={"D": 0.70, "A": 0.80})
    assert len(ds2) == len(ds)
    with pytest.raises(ValueError, match="not on the frontier grid"):
        fr.build_datasets(table, f, picks={"D": 0.71})


def test_missing_column_message(table):
    with pytest.raises(KeyError, match="image_similarity"):
        fr.frontier_fixed_size(table.drop(columns="image_similarity"), [0.7], 2)


def test_image_to_synset_similarity_rowwise():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(7, 5)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(3, 5)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    idx = np.array([0, 2, 1, 1, 0, 2, 2])
    got = fr.image_to_synset_similarity(img, txt, idx, chunk=3)
    want = np.diag(img @ txt[idx].T)  # the authors' B x B route, for comparison only
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        fr.image_to_synset_similarity(img, txt, np.full(7, 3))


def test_share_at_or_below():
    cmps = {"D": pd.DataFrame({"wnid": ["a", "b", "c"], "delta": [0.3, 0.0, -0.1]}),
            "A": pd.DataFrame({"wnid": ["a", "b"], "delta": [-0.3, np.nan]}),
            "none": pd.DataFrame({"wnid": [], "delta": []})}
    out = fr.share_at_or_below(cmps).set_index("dataset")
    assert out.loc["D", "n_at_or_below"] == 2 and out.loc["D", "n_classes"] == 3
    assert out.loc["A", "share_at_or_below"] == 0.5  # an untestable class (NaN) counts, never below
    assert np.isnan(out.loc["none", "share_at_or_below"])


# ---------------------------------------------------------------- threshold modes (notebook 07)

def test_text_thresholds_absolute_and_quantile():
    sim = np.arange(101) / 100.0
    assert fr.text_thresholds(sim, "absolute", 0.82, 0.72) == (0.82, 0.72)
    t_ref, t_min = fr.text_thresholds(sim, "quantile", 0.5, 0.2)
    assert t_ref == pytest.approx(0.5) and t_min == pytest.approx(0.2)
    with pytest.raises(ValueError, match="threshold_mode"):
        fr.text_thresholds(sim, "relative", 0.5, 0.2)


def test_image_threshold_quantile_of_the_reference_rows(table):
    assert fr.image_threshold(table, "absolute", 0.2, 0.8) == 0.2
    # text >= 0.80 (inclusive, whatever the dataset rule): images 0.1, 0.3, 0.5, 0.3, 0.6
    assert fr.image_threshold(table, "quantile", 0.5, 0.80) == pytest.approx(0.3)
    assert fr.image_threshold(table, "quantile", 1.0, 0.80) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="lower t_ref"):
        fr.image_threshold(table, "quantile", 0.5, 0.99)
    with pytest.raises(ValueError, match="threshold_mode"):
        fr.image_threshold(table, "q", 0.5, 0.8)


def test_large_subset_keeps_sfw_rows_above_t_min():
    c = pd.DataFrame({"NSFW": ["UNLIKELY", "NSFW", "UNLIKELY", "UNSURE", "UNLIKELY"],
                      "similarity": [0.5, 0.9, np.nan, 0.4, 0.1]})
    large, n_sfw, t_ref, t_min = fr.large_subset(c, "paper", "absolute", 0.6, 0.2)
    assert large["similarity"].tolist() == [0.5] and n_sfw == 2 and (t_ref, t_min) == (0.6, 0.2)
    large, n_sfw, t_ref, t_min = fr.large_subset(c, "paper", "quantile", 1.0, 0.0, inclusive=True)
    assert large["similarity"].tolist() == [0.5, 0.1] and (t_ref, t_min) == (0.5, 0.1)


# ---------------------------------------------------------------- A-D vs ImageNet (B15)

def _cluster(rng, n, d, spread):
    x = rng.normal(size=d) + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_compare_datasets_is_the_one_comparison_on_the_common_classes():
    from laionet.method import similarity as sim

    rng = np.random.default_rng(0)
    ref = {"a": _cluster(rng, 10, 8, 0.5), "b": _cluster(rng, 10, 8, 0.5), "c": _cluster(rng, 5, 8, 1)}
    tight = {"a": _cluster(rng, 6, 8, 0.1), "b": _cluster(rng, 6, 8, 0.1), "x": _cluster(rng, 4, 8, 1)}
    loose = {"a": _cluster(rng, 6, 8, 3.0), "b": _cluster(rng, 1, 8, 3.0)}  # b: 1 image -> out
    r = fr.compare_datasets({"enc1": ({"D": tight, "A": loose}, ref),
                             "enc2": ({"D": tight, "A": loose}, ref)}, seed=3)
    assert r.classes == ["a"]
    assert set(r.per_class["dataset"]) == {"D", "A"} and set(r.per_class["wnid"]) == {"a"}
    assert len(r.per_class) == 4 and set(r.per_class["encoder"]) == {"enc1", "enc2"}
    s = r.shares[r.shares["encoder"] == "enc1"].set_index("dataset")["share_at_or_below"]
    assert s["D"] == 0.0 and s["A"] == 1.0 and r.shares["n_common"].tolist() == [1] * 4
    delta = sim.compare_classes({"a": tight["a"]}, {"a": ref["a"]}, "paper")["delta"]
    assert (delta > 0).all()  # D above ImageNet: not at or below
    assert list(r.pooled) == ["D", "A", "ImageNet"]
    np.testing.assert_array_equal(
        r.pooled["ImageNet"], sim.pooled_resample(ref, 100, 3, classes=["a"])["similarity"])
    avg = r.avg[r.avg["encoder"] == "enc1"].set_index("dataset")["avg_similarity"]
    assert avg["D"] > avg["ImageNet"] > avg["A"]
    assert list(r.avg.columns) == ["encoder", "dataset", "avg_similarity"] and len(r.avg) == 6


def test_coverage_embeds_each_text_selection():
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"key": np.arange(8), "wnid": list("aaaabbbb"),
                         "similarity": [0.9, 0.8, 0.7, 0.6, 0.9, 0.85, 0.3, 0.2]})
    emb = {k: _cluster(rng, 1, 8, 0.0)[0] for k in rows["key"]}
    seen = []

    def embed(kept):  # stands in for image_embeddings.Embedder.classes
        seen.append(sorted(kept["key"]))
        return {w: np.stack([emb[k] for k in g["key"]]) for w, g in kept.groupby("wnid")}

    ref = {"a": _cluster(rng, 5, 8, 0.5), "b": _cluster(rng, 5, 8, 0.5)}
    cov = fr.coverage(rows, [0.5, 0.75], embed, ref, seed=0)
    assert seen == [[0, 1, 2, 3, 4, 5], [0, 1, 4, 5]]
    assert cov["n_rows"].tolist() == [6, 4] and cov["n_classes"].tolist() == [2, 2]
    assert list(cov.columns) == ["text_threshold", "n_rows", "n_classes", "avg_similarity",
                                 "share_at_or_below"]
    assert 0 <= cov.attrs["reference_avg_similarity"] <= 1
    one = fr.coverage(rows, [0.88], embed, ref)  # one image per class: nothing to compare
    assert one["n_classes"].tolist() == [2] and np.isnan(one["share_at_or_below"][0])


def test_trend_and_relevance_summary():
    summary = pd.DataFrame({"dataset": ["D", "A"], "image_threshold": [0.4, 0.1]})
    avg = pd.DataFrame({"dataset": ["A", "ImageNet", "D"], "avg_similarity": [0.3, 0.5, 0.6]})
    shares = pd.DataFrame({"dataset": ["D", "A"], "share_at_or_below": [0.1, 0.9]})
    t = fr.trend(avg, shares, summary)
    assert t["avg_similarity"] == {"D": 0.6, "A": 0.3} and t["homogeneity_decreases"] is True
    assert t["share_at_or_below"] == {"D": 0.1, "A": 0.9} and t["image_threshold"]["D"] == 0.4
    lai = pd.DataFrame({"wnid": ["a", "a", "b"], "image_similarity": [0.3, 0.5, 0.2]})
    inet = pd.DataFrame({"wnid": ["a", "b", "c"], "image_similarity": [0.35, 0.25, 0.9]})
    r = fr.relevance_summary(lai, inet)
    assert r["n_classes"] == 2 and r["share_laionet_higher"] == 0.5
    assert r["mean_laionet"] == pytest.approx(1 / 3) and r["mean_imagenet"] == pytest.approx(0.5)


def test_zero_shot_recall_from_stage_04_results(tmp_path):
    from laionet.jobs import intra_class as ic

    rec, why = ic.zero_shot_recall(None, "zero-shot")
    assert rec is None and "skipped" in why
    rows = []
    for ds, hits in (("LAIONet", [1, 0, 1, 1]), ("ImageNet", [1, 1, 1, 0])):
        for i, h in enumerate(hits):
            rows.append({"dataset": ds, "model": "zero-shot", "wnid": "ab"[i // 2], "correct1": h})
    df = pd.DataFrame(rows)
    df[df["dataset"] == "LAIONet"].to_parquet(tmp_path / "results_laionet.parquet")
    assert ic.zero_shot_recall(tmp_path, "zero-shot")[0] is None  # ImageNet's results missing
    df[df["dataset"] == "ImageNet"].to_parquet(tmp_path / "results_imagenet.parquet")
    rec, why = ic.zero_shot_recall(tmp_path, "zero-shot")
    assert rec.loc["a", "LAIONet"] == 0.5 and rec.loc["b", "ImageNet"] == 0.5
    assert "2 classes" in why
    none, why = ic.zero_shot_recall(tmp_path, "other")
    assert none is None and "no model 'other'" in why


def test_figures_are_built():
    import matplotlib

    matplotlib.use("Agg")
    from laionet.plots import frontier as frp

    front = pd.DataFrame({"text_threshold": [0.7, 0.8], "image_threshold": [0.3, 0.2]})
    avg = pd.DataFrame({"dataset": ["D", "A", "ImageNet"], "avg_similarity": [0.6, 0.4, 0.5]})
    shares = pd.DataFrame({"dataset": ["D", "A"] * 2, "share_at_or_below": [0.1, 0.6, 0.2, 0.5],
                           "encoder": ["e1", "e1", "e2", "e2"]})
    cov = pd.DataFrame({"text_threshold": [0.5, 0.7], "n_classes": [5, 3], "avg_similarity": [0.3, 0.4]})
    cov.attrs["reference_avg_similarity"] = 0.5
    rec = pd.DataFrame({"LAIONet": [0.5, 1.0], "ImageNet": [0.75, 1.0]})
    rng = np.random.default_rng(0)
    figs = [frp.frontier_figure(front, front), frp.average_similarity_figure(avg),
            frp.shares_figure(shares, "e1"), frp.coverage_figure(cov), frp.recall_figure(rec),
            frp.datasets_histogram({"A": rng.random(20), "D": rng.random(20), "C": rng.random(5)}),
            frp.relevance_figure(rng.random(10), rng.random(10))]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert [t.get_text() for t in figs[5].axes[0].get_legend().get_texts()] == ["A", "D"]


def test_compare_datasets_with_an_empty_dataset_says_why():
    """Found by the rehearsal: 07's absolute thresholds on a random-weight CLIP select no rows, and
    the comparison died in pandas ("No objects to concatenate"); it now warns, naming each
    dataset's image count, and returns an empty comparison."""
    ref = {"n01440764": np.eye(3, dtype=np.float32)}
    with pytest.warns(UserWarning, match=r"no class has >= 2 images.*'A \(reference\)': 0.*quantile"):
        r = fr.compare_datasets({"e": ({"A (reference)": {}, "B": {"n01440764": np.eye(3, dtype=np.float32)}}, ref)})
    assert r.classes == []


@pytest.mark.parametrize("by_dataset", [{}, {"D": {}, "A": {}}], ids=["no dataset", "empty datasets"])
def test_empty_datasets_are_reported_not_a_crash(by_dataset):
    """Absolute thresholds on an encoder off CLIP's scale select nothing (the rehearsal's random
    CLIP): the comparison is empty, with a warning that says why, and the tables and the D -> A
    check are empty too, so stage 07 goes on to B19 and the extensions."""
    rng = np.random.default_rng(0)
    ref = {"a": _cluster(rng, 5, 8, 0.5)}
    with pytest.warns(UserWarning, match="nothing to compare.*threshold_mode: quantile"):
        r = fr.compare_datasets({"enc": (by_dataset, ref)})
    assert r.classes == [] and r.pooled == {} and len(r.per_class) == 0
    assert len(r.shares) == len(r.avg) == 0
    assert {"dataset", "share_at_or_below", "encoder", "n_common"} <= set(r.shares.columns)
    summary = fr.datasets_summary(pd.DataFrame(columns=["dataset", "key", "wnid", "text_threshold",
                                                        "image_threshold"]))
    assert fr.trend(r.avg, r.shares, summary)["homogeneity_decreases"] is None
