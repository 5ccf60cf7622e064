"""Departures from the paper found by reading the code (issue 12, section 2): each test here
fails on the code before the fix."""

from __future__ import annotations

import numpy as np

from laionet import image_embeddings as emb_mod
from laionet.embedding_store import EmbeddingStore


def test_image_embeddings_are_stored_in_float32(tmp_path):
    # Section 4.2 thresholds image-to-synset cosines to 4 decimals: float16 (~1e-3) moves them
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = emb_mod.image_store(tmp_path, emb_mod.LAION, "enc")
    store.add([1, 2, 3], x, contents=[7, 8, 9])
    back = emb_mod.image_store(tmp_path, emb_mod.LAION, "enc").get([1, 2, 3], [7, 8, 9])
    assert back.dtype == np.float32 and np.abs(back - x).max() < 1e-6  # float16: ~1e-3
    # a float16 store written by an older version is never served to a float32 run
    old = EmbeddingStore.at(tmp_path, emb_mod.IMAGENET_VAL, "enc", dtype="float16")
    old.add(["a.JPEG"], x[:1], contents=[1])
    new = emb_mod.image_store(tmp_path, emb_mod.IMAGENET_VAL, "enc")
    assert new.dtype == np.float32 and not new.contains(["a.JPEG"], [1]).any()


def test_stage02_counts_matched_and_single_label_classes_apart(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from laionet import selection as sel
    from test_selection import LION, _write_world

    tiger = "n02129604"  # only in a multi-label row ("tiger" and "lion"): matched, never kept
    m01, parts = _write_world(tmp_path)
    for sub, extra in (("rows", {"wnids": [[LION, tiger]], "n_classes": pa.array([2], pa.int16()),
                                 "multi_label": [True]}),
                       ("matches", None)):
        f = m01 / sub / "part-00000.parquet"
        t = pq.read_table(f)
        base = {"part": pa.array([0], pa.int32()), "row": pa.array([5], pa.int64()),
                "key": pa.array([5], pa.int64())}
        if extra:
            add = pa.table({**base, **extra}, schema=t.schema)
        else:
            add = pa.table({"part": pa.array([0, 0], pa.int32()), "row": pa.array([5, 5], pa.int64()),
                            "key": pa.array([5, 5], pa.int64()), "lemma": ["lion", "tiger"],
                            "wnid": [LION, tiger]}, schema=t.schema)
        pq.write_table(pa.concat_tables([t, add]), f)
    cand, counts = sel.load_candidates(m01, parts)
    summ = sel.summary(cand, cand.iloc[:0], counts, 0.5)
    assert (summ["n_classes_matched"], summ["n_classes_single_label"]) == (4, 3)


def test_b7_b9_use_the_papers_models_and_the_gallery_skips_web_site(tmp_path, monkeypatch):
    import pandas as pd

    from laionet.evaluation import aggregate, pipeline

    names = ["beit-base-patch16-224", "convnext-base-224", "convnext-base-224-22k-1k",
             "convnext-tiny-224", "resnet-18", "resnet-50", "vit-base-patch16-224"]
    acc = pd.DataFrame({"model": names})  # alphabetical, as timm lists them
    assert aggregate.pick_models(acc) == ["resnet-50", "convnext-base-224",
                                          "convnext-base-224-22k-1k", "vit-base-patch16-224"]
    assert aggregate.pick_gap_model(acc) == "vit-base-patch16-224"
    # B9's gallery leaves out images the model calls web site / book jacket
    results = pd.DataFrame({
        "image_key": ["1", "2", "3", "4"], "dataset": "LAIONet", "model": "m", "wnid": "a",
        "top5": [["n06359193", "a"], ["a"], ["n07248320"], ["b", "a"]],
        "correct5": pd.array([True, True, False, True], dtype="boolean")})
    (tmp_path / "manifest.parquet").touch()
    monkeypatch.setattr(pipeline, "images_of", lambda d, keys: {k: f"im{k}" for k in keys})
    ims, ok, keys = pipeline.gallery(results, "m", "a", tmp_path, n=10)
    assert keys == ["2", "4"] and ims == ["im2", "im4"] and ok == [True, True]
