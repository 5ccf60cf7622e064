"""§4.4 retrieval on a tiny index with a known nearest neighbour; incremental build; save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet import retrieval as rt


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def parts():
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(60, 16)))
    keys = np.r_[np.arange(30) + 0 * 100_000_000, np.arange(30) + 1 * 100_000_000].astype(np.int64)
    return {0: (emb[:30], keys[:30]), 1: (emb[30:], keys[30:])}


def test_exact_nearest_neighbour(parts):
    idx = rt.TextIndex.create(16)
    for p, (e, k) in parts.items():
        assert idx.add_part(p, e, k)
    # a query slightly perturbed from row 7 of part 1 must retrieve exactly that row
    target = parts[1][0][7]
    q = unit((target + 0.01)[None, :])
    keys, sims = idx.search(q, k=1)
    assert keys[0, 0] == 1 * 100_000_000 + 7
    assert sims[0, 0] == pytest.approx(float(q[0] @ target), abs=1e-5)
    # brute force agrees for many queries
    allemb = np.vstack([parts[0][0], parts[1][0]])
    allkeys = np.r_[parts[0][1], parts[1][1]]
    qs = unit(np.random.default_rng(5).normal(size=(25, 16)))
    keys, sims = idx.search(qs, k=3, batch_size=4)
    bf = np.argsort(-(qs @ allemb.T), axis=1)[:, :3]
    np.testing.assert_array_equal(keys, allkeys[bf])


def test_incremental_equals_at_once_and_no_duplicate_part(parts):
    inc = rt.TextIndex.create(16)
    inc.add_part(0, *parts[0])
    inc.add_part(1, *parts[1])
    assert not inc.add_part(1, *parts[1])          # already in: nothing added
    assert inc.ntotal == 60 and inc.parts == {0, 1}
    once = rt.TextIndex.create(16)
    once.add_part(99, np.vstack([parts[0][0], parts[1][0]]), np.r_[parts[0][1], parts[1][1]])
    q = unit(np.random.default_rng(2).normal(size=(10, 16)))
    a, sa = inc.search(q, k=2)
    b, sb = once.search(q, k=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)


def test_save_load_round_trip_and_resume(tmp_path, parts):
    folder = tmp_path / "index"
    idx = rt.TextIndex.open(folder, 16)
    idx.add_part(0, *parts[0])
    idx.save(folder)
    resumed = rt.TextIndex.open(folder, 16)
    assert resumed.parts == {0} and resumed.ntotal == 30
    resumed.add_part(0, *parts[0])                 # skipped
    resumed.add_part(1, *parts[1])
    resumed.save(folder)
    assert len(list(folder.glob("index-*.faiss"))) == 1   # the stale file is gone
    again = rt.TextIndex.load(folder)
    q = unit(np.random.default_rng(3).normal(size=(5, 16)))
    np.testing.assert_array_equal(again.search(q)[0], resumed.search(q)[0])
    with pytest.raises(ValueError, match="saved index"):
        rt.TextIndex.open(folder, 8)


def test_ivfpq_needs_training_and_finds_exact_duplicates(parts):
    rng = np.random.default_rng(4)
    emb = unit(rng.normal(size=(1000, 16)))
    idx = rt.TextIndex.create(16, "IVF4,PQ8x4", nprobe=4)
    with pytest.raises(RuntimeError, match="trained"):
        idx.add_part(0, emb, np.arange(1000))
    idx.train(emb)
    idx.add_part(0, emb, np.arange(1000))
    keys, _ = idx.search(emb[:50], k=1)
    assert (keys[:, 0] == np.arange(50)).mean() > 0.8   # approximate, but mostly right


def test_missing_neighbours_and_shape_errors(parts):
    idx = rt.TextIndex.create(16)
    idx.add_part(0, parts[0][0][:2], parts[0][1][:2])
    keys, sims = idx.search(parts[0][0][:1], k=3)
    assert keys[0, 2] == -1 and np.isnan(sims[0, 2])
    with pytest.raises(ValueError, match="16-d"):
        idx.search(np.zeros((1, 8)))
    with pytest.raises(ValueError, match="keys"):
        idx.add_part(5, parts[0][0], parts[0][1][:3])


def test_label_dedupe_threshold_and_sweep():
    keys = np.array([[10], [10], [11], [12], [-1]])
    sims = np.array([[0.9], [0.6], [0.7], [0.75], [np.nan]], dtype=np.float32)
    lab = rt.label_retrieved(["i1", "i2", "i3", "i4", "i5"], ["a", "a", "a", "b", "b"], keys, sims)
    assert len(lab) == 4                              # missing neighbour dropped
    ds = rt.retrieved_dataset(lab, 0.7)               # strict: 0.7 fails
    assert ds[["wnid", "key"]].values.tolist() == [["a", 10], ["b", 12]]
    assert ds.loc[0, "n_queries"] == 2 and ds.loc[0, "similarity"] == pytest.approx(0.9)
    assert len(rt.retrieved_dataset(lab, 0.7, inclusive=True)) == 3

    def compare(kept):  # pretend class a is lower, b higher; a class "x" is never tested
        w = pd.Series(sorted(kept["wnid"].unique()) + ["x"], dtype=object)
        return pd.DataFrame({"wnid": w, "tested": w != "x", "significantly_lower": w == "a",
                             "significantly_higher": w == "b"})

    sw = rt.threshold_sweep(lab, [0.5, 0.8, 0.95], compare)
    assert sw["n_classes"].tolist() == [2, 1, 0]
    assert sw["n_tested"].tolist() == [2, 1, 0]
    assert sw["share_lower"].tolist()[:2] == [0.5, 1.0] and np.isnan(sw["share_lower"][2])
    assert sw["share_higher"].tolist()[:2] == [0.5, 0.0]


def test_suggest_factory():
    assert rt.suggest_factory(1000, 384) == "Flat"
    assert rt.suggest_factory(413_871_335, 512) == "IVF65536,PQ64"
