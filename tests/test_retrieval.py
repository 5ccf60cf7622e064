"""§4.4 retrieval on a tiny index with a known nearest neighbour; incremental build; save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet import paper
from laionet.jobs import caption_index
from laionet.method import retrieval as rt


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def parts():
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(60, 16)))
    keys = np.r_[np.arange(30) + 0 * 100_000_000, np.arange(30) + 1 * 100_000_000].astype(np.int64)
    return {0: (emb[:30], keys[:30]), 1: (emb[30:], keys[30:])}


def _index(folder, parts, factory="Flat", nprobe=32):
    idx = caption_index.PartedIndex.open(folder, 16, factory, nprobe=nprobe)
    for p, (e, k) in parts.items():
        idx.add_part(p, [(e, k)])
    return idx


def test_exact_nearest_neighbour(tmp_path, parts):
    idx = _index(tmp_path, parts)
    # a query slightly perturbed from row 7 of part 1 must retrieve exactly that row
    target = parts[1][0][7]
    q = unit((target + 0.01)[None, :])
    keys, sims = idx.search(q, k=1)
    assert keys[0, 0] == 1 * 100_000_000 + 7
    assert sims[0, 0] == pytest.approx(float(q[0] @ target), abs=1e-5)
    # brute force agrees for many queries, searched in batches across the parts
    allemb = np.vstack([parts[0][0], parts[1][0]])
    allkeys = np.r_[parts[0][1], parts[1][1]]
    qs = unit(np.random.default_rng(5).normal(size=(25, 16)))
    keys, sims = idx.search(qs, k=3, batch_size=4)
    bf = np.argsort(-(qs @ allemb.T), axis=1)[:, :3]
    np.testing.assert_array_equal(keys, allkeys[bf])


def test_parts_resume_and_equal_one_index_of_all(tmp_path, parts):
    inc = _index(tmp_path / "inc", {0: parts[0]})
    resumed = caption_index.PartedIndex.open(tmp_path / "inc", 16)
    assert not resumed.add_part(0, [parts[0]])        # already in: nothing added
    assert resumed.add_part(1, [parts[1]])
    assert resumed.ntotal == 60 and resumed.parts == {0, 1} == inc.parts
    once = _index(tmp_path / "once", {99: (np.vstack([parts[0][0], parts[1][0]]),
                                           np.r_[parts[0][1], parts[1][1]])})
    q = unit(np.random.default_rng(2).normal(size=(10, 16)))
    a, sa = resumed.search(q, k=2)
    b, sb = once.search(q, k=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)
    with pytest.raises(ValueError, match="asked for Flat over 8-d"):
        caption_index.PartedIndex.open(tmp_path / "inc", 8)


def test_ivfpq_needs_training_and_finds_exact_duplicates(tmp_path):
    rng = np.random.default_rng(4)
    emb = unit(rng.normal(size=(1000, 16)))
    idx = caption_index.PartedIndex.open(tmp_path, 16, "IVF4,PQ8x4", nprobe=4)
    with pytest.raises(RuntimeError, match="trained"):
        idx.add_part(0, [(emb, np.arange(1000))])
    idx.train(emb)
    idx.add_part(0, [(emb, np.arange(1000))])
    keys, _ = idx.search(emb[:50], k=1)
    assert (keys[:, 0] == np.arange(50)).mean() > 0.8   # approximate, but mostly right


def test_missing_neighbours_and_shape_errors(tmp_path, parts):
    idx = _index(tmp_path, {0: (parts[0][0][:2], parts[0][1][:2])})
    keys, sims = idx.search(parts[0][0][:1], k=3)
    assert keys[0, 2] == -1 and np.isnan(sims[0, 2])
    with pytest.raises(ValueError, match="16-d"):
        idx.search(np.zeros((1, 8)))
    with pytest.raises(ValueError, match="keys"):
        idx.add_part(5, [(parts[0][0], parts[0][1][:3])])
    with pytest.raises(KeyError, match="not indexed"):
        idx.search(parts[0][0][:1], parts=[7])


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


def test_the_size_rule_and_the_bytes_a_caption():
    assert caption_index.suggest_factory(1000, 384) == "Flat"
    assert caption_index.suggest_factory(caption_index.FLAT_MAX, 512) == "Flat"
    assert caption_index.suggest_factory(413_871_335, 512) == "IVF65536,PQ32"   # the authors' 41 B/caption
    assert caption_index.auto_train_size("IVF65536,PQ32", 413_871_335) == 40 * 65536
    assert caption_index.auto_train_size("Flat", 10**9) == 0


def _spy(enc_cls, dim=16):
    enc = enc_cls(dim)
    enc.calls = []
    embed = enc.embed_texts

    def spy(texts, batch_size=64, progress=False):
        enc.calls.append(len(texts))
        return embed(texts, batch_size, progress)

    enc.embed_texts = spy
    return enc


def test_index_parts_one_file_per_part_resumes_and_merges_exactly(tmp_path, hash_text_encoder):
    from laionet.jobs.embedding_store import EmbeddingStore

    parts = _laion_parts(tmp_path / "laion", {0: 25, 3: 14})
    enc = _spy(hash_text_encoder)
    store = EmbeddingStore(tmp_path / "store", enc.name)
    first = caption_index.index_parts({0: parts[0]}, enc, tmp_path / "index", store=store, chunk_rows=10)
    assert first.parts == {0} and first.ntotal == 25 and first.factory == "Flat"
    assert enc.calls == [10, 10, 5]                       # chunk by chunk, never a whole part
    part0 = tmp_path / "index" / "part-00000.faiss"
    stamp = part0.stat().st_mtime_ns
    index = caption_index.index_parts(parts, enc, tmp_path / "index", store=store, chunk_rows=10)
    assert index.parts == {0, 3} and index.ntotal == 39
    assert enc.calls[3:] == [10, 4]                       # only part 3 embedded
    assert part0.stat().st_mtime_ns == stamp              # a finished part is never rewritten
    assert len(store) == 0                                # embeddings not kept unless asked
    # the merged top-k of the parts = brute force over every caption
    texts = [f"caption 0-{i}" for i in range(25)] + [f"caption 3-{i}" for i in range(14)]
    keys = np.r_[np.arange(25), 3 * 100_000_000 + np.arange(14)]
    emb = hash_text_encoder(16).embed_texts(texts)
    q = unit(np.random.default_rng(1).normal(size=(12, 16)))
    got_k, got_s = index.search(q, k=4)
    bf = np.argsort(-(q @ emb.T), axis=1)[:, :4]
    np.testing.assert_array_equal(got_k, keys[bf])
    np.testing.assert_allclose(got_s, np.take_along_axis(q @ emb.T, bf, 1), atol=1e-5)
    only3, _ = index.search(q, k=1, parts=[3])
    assert (only3 // 100_000_000 == 3).all()
    assert index.bytes_per_caption() > 4 * 16             # Flat: the float32 vectors + ids
    again = caption_index.index_parts(parts, enc, tmp_path / "index", store=store)
    assert again.ntotal == 39 and len(enc.calls) == 5     # nothing to do
    with pytest.raises(ValueError, match="asked for IVF"):
        caption_index.index_parts(parts, enc, tmp_path / "index", factory="IVF4,PQ4")
    p0 = parts[0]
    parts = {0: p0, **_laion_parts(tmp_path / "laion", {3: 15})}  # part 3 changed under the index:
    changed = caption_index.index_parts(parts, enc, tmp_path / "index", chunk_rows=10)
    assert changed.ntotal == 40 and enc.calls[5:] == [10, 5]  # it alone is indexed again
    assert part0.stat().st_mtime_ns == stamp
    other = _spy(hash_text_encoder)                        # another encoder: its own markers
    other.name = "another-encoder"
    caption_index.index_parts({0: p0}, other, tmp_path / "index", chunk_rows=10)
    assert other.calls == [10, 10, 5]


def test_keep_embeddings_fills_the_store(tmp_path, hash_text_encoder):
    from laionet.jobs.embedding_store import EmbeddingStore

    parts = _laion_parts(tmp_path / "laion", {0: 5, 3: 4})
    enc = hash_text_encoder()
    store = EmbeddingStore(tmp_path / "store", enc.name)
    caption_index.index_parts(parts, enc, tmp_path / "i1", store=store, keep_embeddings=True)
    assert len(store) == 9
    n = len(enc.seen)
    caption_index.index_parts(parts, enc, tmp_path / "i2", store=store, keep_embeddings=True)
    assert len(enc.seen) == n                             # read back from the store
    with pytest.raises(ValueError, match="needs a store"):
        caption_index.index_parts(parts, enc, tmp_path / "i3", keep_embeddings=True)


def test_ivfpq_index_is_trained_on_a_sample_and_rescored_exactly(tmp_path, hash_text_encoder):
    """IVF-PQ: trained once on a sample across the parts, 2 bytes of code (4 x 4 bits) + 8 of
    key a caption; its scores differ from the cosine, the exact re-scoring equals it."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # k-means on a loaded 2-core machine: threads only spin
    try:
        parts = _laion_parts(tmp_path / "laion", {0: 400, 1: 300})
        enc = hash_text_encoder(16)
        index = caption_index.index_parts(parts, enc, tmp_path / "index", factory="IVF4,PQ4x4",
                               train_size=300, chunk_rows=128, nprobe=4)
    finally:
        faiss.omp_set_num_threads(threads)
    assert index.ntotal == 700 and index.parts == {0, 1}
    assert len(enc.seen) == 300 + 700                     # the sample, then every caption once
    trained = (tmp_path / "index" / caption_index.TRAINED).stat().st_size
    files = sum(r["bytes"] for r in index.records().values())
    assert (files - 2 * trained) / 700 == pytest.approx(2 + 8, abs=0.5)
    assert faiss.read_index(str(tmp_path / "index" / "part-00001.faiss")).ntotal == 300
    texts = [f"caption 0-{i}" for i in range(10)] + [f"caption 1-{i}" for i in range(10)]
    q = enc.embed_texts(texts)
    found, approx = index.search(q, k=2)
    exact = rt.exact_similarity(q, found, lambda keys: caption_index.caption_embeddings(keys, parts, enc))
    direct = np.array([[float(q[i] @ enc.embed_texts([_caption(key)])[0]) for key in row]
                       for i, row in enumerate(found)])
    np.testing.assert_allclose(exact, direct, atol=1e-6)  # exact = a direct cosine
    assert np.abs(approx - exact).max() > 1e-3            # the index's score is not
    lab = rt.label_retrieved(np.arange(20), ["a"] * 20, found, exact, approx)
    assert (lab["similarity"] != lab["index_similarity"]).any()
    assert np.isnan(rt.exact_similarity(q[:1], np.array([[-1, found[0, 0]]]),
                                        lambda keys: enc.embed_texts(
                                            [_caption(x) for x in keys]))[0, 0])


def _caption(key):
    return f"caption {int(key) // 100_000_000}-{int(key) % 100_000_000}"


def test_sample_and_rows_to_download(tmp_path):
    parts = _laion_parts(tmp_path / "laion", {0: 3, 2: 3})
    retrieved = pd.DataFrame({"wnid": ["a", "a", "b", "b"],
                              "key": [200_000_001, 1, 1, 2], "similarity": [0.9, 0.8, 0.7, 0.6]})
    sample = rt.sample_retrieved(retrieved, n_per_class=5, seed=0)
    assert len(sample) == 4 and "pair" not in sample.columns   # a row can serve two classes
    assert len(rt.sample_retrieved(retrieved, n_per_class=1, seed=0)) == 2
    todo = caption_index.rows_to_download(sample, parts)
    assert todo["key"].tolist() == [1, 2, 200_000_001]         # distinct rows, in key order
    assert todo["URL"].tolist() == ["http://x/0/1.jpg", "http://x/0/2.jpg", "http://x/2/1.jpg"]
    assert todo.loc[todo["key"] == 1, "wnid"].item() == "a"    # the row's first class


def test_the_sweep_compares_the_kept_pairs_with_their_images():
    from laionet.jobs.image_embeddings import ImageEmbeddings
    from laionet.method import similarity as sim

    rng = np.random.default_rng(0)
    emb = ImageEmbeddings(np.arange(20), unit(rng.normal(size=(20, 16))))
    ref = {"a": unit(rng.normal(size=(6, 16))), "b": unit(rng.normal(size=(6, 16)))}
    kept = pd.DataFrame({"wnid": ["a"] * 8 + ["b"] * 8 + ["b"], "key": list(range(16)) + [99]})
    by = emb.by_class(kept)
    assert {w: len(E) for w, E in by.items()} == {"a": 8, "b": 8}  # key 99 has no image
    np.testing.assert_array_equal(by["b"], emb.emb[8:16])
    seen = []

    def compare(k):
        seen.append(len(k))
        return sim.compare_classes(emb.by_class(k), ref, method="paper", min_pairs=3)

    sw = rt.threshold_sweep(kept.assign(similarity=0.9, image_key="q"), [0.5, 0.95], compare)
    assert sw["n_classes"].tolist() == [2, 0] and seen == [17, 0]
    assert sw["n_tested"].tolist() == [2, 0]


def test_figures_are_built():
    import matplotlib

    matplotlib.use("Agg")
    from laionet.plots import retrieval as rtp

    rng = np.random.default_rng(0)
    a = {"a": unit(rng.normal(size=(6, 16))), "b": unit(rng.normal(size=(4, 16)))}
    b = {"a": unit(rng.normal(size=(5, 16)))}
    sweep = pd.DataFrame({"threshold": [0.5, 0.6], "n_classes": [2, 1], "share_lower": [0.5, 1.0],
                          "share_higher": [0.0, 0.0]})
    figs = [rtp.pooled_histogram(a, b, "LAION | ImageNet texts"), rtp.sweep_figure(sweep, 0.5)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert len(paper.PAPER_SWEEP) == 20 and paper.PAPER_SWEEP[0] == 0.5 and paper.PAPER_SWEEP[-1] == 0.75
