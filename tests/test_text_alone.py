"""§4.3 false-class proportion on hand-built similarities: ties, denominator, excluded, paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet.method import text_alone as ta
from laionet.jobs import embedding_store

# 4 captions x 5 classes
SIM = np.array([
    [0.9, 0.1, 0.2, 0.3, 0.95],   # own 0: one class (4) above
    [0.5, 0.5, 0.6, 0.4, 0.1],    # own 1: a tie (class 0) does not count; class 2 above
    [0.2, 0.3, 0.1, 0.4, 0.5],    # own 2: every other class above
    [0.7, 0.7, 0.7, 0.7, 0.7],    # own unknown (-1)
])
TRUE = np.array([0, 1, 2, -1])


def test_fixed_denominator_and_ties():
    r = ta.false_class_proportion(SIM, TRUE)
    assert r["n_more_similar"].tolist()[:3] == [1, 1, 4]
    assert r["n_compared"].tolist()[:3] == [4, 4, 4]          # other classes only
    np.testing.assert_allclose(r["p"][:3], [0.25, 0.25, 1.0])
    assert np.isnan(r["p"][3]) and np.isnan(r["own_similarity"][3])
    np.testing.assert_allclose(r["own_similarity"][:3], [0.9, 0.5, 0.1], rtol=1e-6)
    rep = ta.report(r)
    assert rep == {"n_captions": 4, "n_with_p": 3, "n_excluded_or_unknown_class": 1,
                   "denominators": [4]}


def test_excluded_classes():
    excluded = np.array([False, False, False, False, True])   # class 4 left out of the set
    r = ta.false_class_proportion(SIM, TRUE, excluded=excluded)
    # caption 0: class 4 no longer counts; 3 other classes compared
    assert r["n_more_similar"].tolist()[:3] == [0, 1, 3]
    np.testing.assert_allclose(r["p"][:3], [0.0, 1 / 3, 1.0])
    # a caption whose own class is excluded gets NaN, not 0
    r2 = ta.false_class_proportion(SIM[:1], np.array([4]), excluded=excluded)
    assert np.isnan(r2["p"][0])


def test_paper_mode():
    excluded = np.array([False, False, False, False, True])
    r = ta.false_class_proportion(SIM, TRUE, excluded=excluded, paper=True)
    # denominator = every class of the set (4), the true class included; unknown -> p = 0
    assert r["n_compared"].tolist() == [4, 4, 4, 4]
    np.testing.assert_allclose(r["p"], [0.0, 0.25, 0.75, 0.0])


def test_blocks_equal_one_matrix():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(53, 8)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    c = rng.normal(size=(6, 8)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    true = rng.integers(-1, 6, size=53)
    whole = ta.false_class_proportion(t @ c.T, true)
    texts = pd.Series([f"text {j}" for j in range(6)], index=[f"w{j}" for j in range(6)])
    caps = pd.DataFrame({"image_key": [f"{i}.JPEG" for i in range(53)],
                         "wnid": [f"w{j}" if j >= 0 else "unknown" for j in true]})
    blocked = ta.false_class_table(caps, texts, t, c, block_size=7)
    assert blocked[["image_key", "wnid"]].equals(caps)
    np.testing.assert_allclose(whole["p"], blocked["p"], rtol=1e-6)
    excluded = ta.false_class_table(caps, texts, t, c, exclude_wnids=["w5"], block_size=7)
    pd.testing.assert_frame_equal(excluded.drop(columns=["image_key", "wnid"]),
                                  ta.false_class_proportion(t @ c.T, true, texts.index == "w5"))
    assert len(ta.false_class_table(caps.iloc[:0], texts, t[:0], c)) == 0
    # brute force over captions
    for i in range(53):
        if true[i] < 0:
            continue
        s = c @ t[i]
        want = sum(s[j] > s[true[i]] for j in range(6) if j != true[i]) / 5
        assert blocked["p"][i] == pytest.approx(want)
    with pytest.raises(ValueError, match="same text encoder"):
        ta.false_class_table(caps, texts, t, c[:, :4])


def test_out_of_range_true_index():
    with pytest.raises(ValueError, match="out of range"):
        ta.false_class_proportion(SIM, np.array([0, 1, 5, 0]))


def test_cdf_and_binned():
    p = np.array([0.0, 0.0, 0.1, 0.5, np.nan])
    np.testing.assert_allclose(ta.cdf(p, [0.0, 0.05, 0.1, 1.0]), [0.5, 0.5, 0.75, 1.0])
    s = np.array([0.1, 0.15, 0.6, 0.9, 0.5])
    b = ta.binned_proportion(s, p, bins=np.array([0.0, 0.5, 1.0]))
    assert b["n"].tolist() == [2, 2]          # the NaN p is left out
    np.testing.assert_allclose(b["mean_p"], [0.0, 0.3])
    np.testing.assert_allclose(b["half_width"], [0.0, 1.96 * np.sqrt(0.3 * 0.7 / 2)])
    b2 = ta.binned_proportion(s[:4], p[:4], bins=4)
    assert b2["n"].sum() == 4


def test_own_class_similarity_and_unknown_class():
    texts = pd.Series(["t0", "t1"], index=["a", "b"])
    cls = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    emb = np.array([[0.6, 0.8], [0.6, 0.8]], dtype=np.float32)
    np.testing.assert_allclose(ta.own_class_similarity(emb, ["a", "b"], texts, cls), [0.6, 0.8])
    with pytest.raises(KeyError, match="laionet.parquet.*'c'"):
        ta.own_class_similarity(emb, ["a", "c"], texts, cls, "laionet.parquet")


def test_embed_captions_goes_through_the_store(tmp_path, hash_text_encoder):
    from laionet.jobs.embedding_store import EmbeddingStore

    caps = pd.DataFrame({"image_key": ["x.JPEG", "y.JPEG"], "text": ["ab", "abcd"]})
    enc = hash_text_encoder()
    e = embedding_store.embed_captions(enc, caps, EmbeddingStore(tmp_path, enc.name))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-6)
    again = embedding_store.embed_captions(enc, caps.iloc[::-1], EmbeddingStore(tmp_path, enc.name))
    assert enc.seen == ["ab", "abcd"]                 # the second call embedded nothing
    np.testing.assert_allclose(again, e[::-1])
    edited = embedding_store.embed_captions(enc, caps.assign(text=["ab", "abc"]),
                               EmbeddingStore(tmp_path, enc.name))
    assert enc.seen == ["ab", "abcd", "abc"]          # an edited caption is embedded again
    np.testing.assert_allclose(edited[0], e[0])


def test_figures_are_built():
    import matplotlib

    matplotlib.use("Agg")
    from laionet.plots import text_alone as tap

    rng = np.random.default_rng(0)
    own = rng.random(200)
    own[3] = np.nan
    p = rng.random(200) ** 4
    figs = [tap.similarity_figure(rng.random(50) * 0.5 + 0.5, own),
            tap.false_class_figure(p, ta.binned_proportion(own, p, bins=10), 0.05)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert len(figs[1].axes) == 3  # CDF, binned mean and its twin axis
