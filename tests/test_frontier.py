"""§4.2 threshold frontier and datasets A-D on hand-built tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet import frontier as fr


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
    means = pd.DataFrame({"dataset": ["D", "D", "D", "A", "A"], "wnid": ["a", "b", "c", "a", "b"],
                          "mean": [0.9, 0.5, 0.7, 0.3, 0.5]})
    ref = pd.Series({"a": 0.6, "b": 0.5, "c": 0.8})
    out = fr.share_at_or_below(means, ref).set_index("dataset")
    assert out.loc["D", "n_at_or_below"] == 2 and out.loc["D", "n_classes"] == 3
    assert out.loc["A", "share_at_or_below"] == 1.0
    common = fr.share_at_or_below(means, ref, classes=["a"]).set_index("dataset")
    assert common.loc["D", "share_at_or_below"] == 0.0
