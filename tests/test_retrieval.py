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


# ---------------------------------------------------------------- the index built from parts (09)

def _laion_parts(folder, sizes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    for part, n in sizes.items():
        f = folder / f"part-{part:05d}-x.parquet"
        pq.write_table(pa.table({"TEXT": [f"caption {part}-{i}" for i in range(n)],
                                 "URL": [f"http://x/{part}/{i}.jpg" for i in range(n)]}), f)
        parts[part] = f
    return parts


def test_build_index_from_parts_resumes_and_reuses_the_store(tmp_path, hash_text_encoder):
    from laionet.embedding_store import EmbeddingStore

    parts = _laion_parts(tmp_path / "laion", {0: 5, 3: 4})
    enc = hash_text_encoder()
    cache = EmbeddingStore(tmp_path / "cache", enc.name)
    first = rt.build_index({0: parts[0]}, enc, cache, tmp_path / "index")   # part 0 only
    assert first.parts == {0} and first.ntotal == 5 and first.factory == "Flat"
    n_before = len(enc.seen)
    index = rt.build_index(parts, enc, cache, tmp_path / "index")            # resumes: adds part 3
    assert index.parts == {0, 3} and index.ntotal == 9
    assert len(enc.seen) == n_before + 4                                     # only part 3 embedded
    q = enc.embed_texts(["caption 3-2"])
    keys, sims = index.search(q, k=1)
    assert keys[0, 0] == 3 * 100_000_000 + 2 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    again = rt.build_index(parts, enc, cache, tmp_path / "index")            # nothing to do
    assert again.ntotal == 9 and len(enc.seen) == n_before + 5               # (+ the query)
    # the captions came through the store: a fresh build elsewhere embeds nothing
    rt.build_index(parts, enc, EmbeddingStore(tmp_path / "cache", enc.name), tmp_path / "index2")
    assert len(enc.seen) == n_before + 5
    with pytest.raises(RuntimeError, match="delete the folder"):  # a folder left by other parts
        rt.build_index({3: parts[3]}, enc, cache, tmp_path / "index")


def test_sample_and_rows_to_download(tmp_path):
    parts = _laion_parts(tmp_path / "laion", {0: 3, 2: 3})
    retrieved = pd.DataFrame({"wnid": ["a", "a", "b", "b"],
                              "key": [200_000_001, 1, 1, 2], "similarity": [0.9, 0.8, 0.7, 0.6]})
    sample = rt.sample_retrieved(retrieved, n_per_class=5, seed=0)
    assert len(sample) == 4 and "pair" not in sample.columns   # a row can serve two classes
    assert len(rt.sample_retrieved(retrieved, n_per_class=1, seed=0)) == 2
    todo = rt.rows_to_download(sample, parts)
    assert todo["key"].tolist() == [1, 2, 200_000_001]         # distinct rows, in key order
    assert todo["URL"].tolist() == ["http://x/0/1.jpg", "http://x/0/2.jpg", "http://x/2/1.jpg"]
    assert todo.loc[todo["key"] == 1, "wnid"].item() == "a"    # the row's first class


def test_class_comparer_matches_compare_classes():
    from laionet import similarity as sim

    rng = np.random.default_rng(0)
    keys = np.arange(20)
    emb = unit(rng.normal(size=(20, 16)))
    ref = {"a": unit(rng.normal(size=(6, 16))), "b": unit(rng.normal(size=(6, 16)))}
    kept = pd.DataFrame({"wnid": ["a"] * 8 + ["b"] * 8 + ["b"], "key": list(range(16)) + [99]})
    comparer = rt.ClassComparer(keys, emb, ref, method="paper", min_pairs=3, seed=1)
    by = comparer.by_class(kept)
    assert {w: len(E) for w, E in by.items()} == {"a": 8, "b": 8}  # key 99 has no image
    np.testing.assert_array_equal(by["b"], emb[8:16])
    pd.testing.assert_frame_equal(comparer(kept), sim.compare_classes(
        {"a": emb[:8], "b": emb[8:16]}, ref, method="paper", min_pairs=3, seed=1))
    sw = rt.threshold_sweep(kept.assign(similarity=0.9, image_key="q"), [0.5], comparer)
    assert sw["n_classes"].tolist() == [2]


def test_figures_are_built():
    import matplotlib

    matplotlib.use("Agg")
    from laionet import retrieval_plots as rtp

    rng = np.random.default_rng(0)
    a = {"a": unit(rng.normal(size=(6, 16))), "b": unit(rng.normal(size=(4, 16)))}
    b = {"a": unit(rng.normal(size=(5, 16)))}
    sweep = pd.DataFrame({"threshold": [0.5, 0.6], "n_classes": [2, 1], "share_lower": [0.5, 1.0],
                          "share_higher": [0.0, 0.0]})
    figs = [rtp.pooled_histogram(a, b, "LAION | ImageNet texts"), rtp.sweep_figure(sweep, 0.5)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert len(rt.PAPER_SWEEP) == 20 and rt.PAPER_SWEEP[0] == 0.5 and rt.PAPER_SWEEP[-1] == 0.75
