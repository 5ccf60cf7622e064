"""laionet.jobs.embedding_store: one store for captions and images, keyed by key and content."""

from __future__ import annotations

import numpy as np
import pytest

from laionet.jobs.embedding_store import EmbeddingStore, content_hash, content_hashes


def _emb(n, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_round_trip_int_keys_and_reopen(tmp_path):
    s = EmbeddingStore(tmp_path / "s", "enc")
    e = _emb(5)
    keys = np.array([10, 3, 7, 100_000_000_004, 5])
    c = content_hashes(["a", "b", "c", "d", "e"])
    s.add(keys, e, c)
    got = EmbeddingStore(tmp_path / "s", "enc").get(keys[::-1], c[::-1])
    np.testing.assert_allclose(got, (e / np.linalg.norm(e, axis=1, keepdims=True))[::-1], rtol=1e-6)


def test_changed_content_is_a_miss_not_a_stale_hit(tmp_path):
    """The same row key with another caption (another seed, a re-mirrored part) must be re-embedded."""
    s = EmbeddingStore(tmp_path / "s", "enc")
    s.add([1, 2], _emb(2), content_hashes(["cougar in the snow", "a tiger"]))
    assert s.contains([1, 2], content_hashes(["cougar in the snow", "a tiger"])).all()
    assert not s.contains([1], [content_hash("cougar American")]).any()
    with pytest.raises(KeyError, match="not stored"):
        s.get([1], [content_hash("cougar American")])
    s.add([1], _emb(1, seed=1), [content_hash("cougar American")])  # both versions kept
    assert s.contains([1, 1], content_hashes(["cougar in the snow", "cougar American"])).all()


def test_string_keys_images(tmp_path):
    s = EmbeddingStore(tmp_path / "s", "tower", dtype="float16")
    s.add(["ILSVRC2012_val_00000001.JPEG", "x.JPEG"], _emb(2), [content_hash(b"\xff\xd8jpeg1"), 7])
    assert s.contains(["x.JPEG"], [7]).all() and not s.contains(["x.JPEG"], [8]).any()
    with pytest.raises(ValueError, match="keyed by str keys"):
        s.add([1], _emb(1))
    assert EmbeddingStore(tmp_path / "s", "tower").dtype == np.float16


def test_idempotent_add_and_errors(tmp_path):
    s = EmbeddingStore(tmp_path / "s", "enc")
    first = s.add([1, 2], _emb(2))
    assert s.add([2, 1], _emb(2)[::-1]) == first  # same entries: no second shard
    assert len(list((tmp_path / "s").glob("*.keys.parquet"))) == 1
    with pytest.raises(ValueError, match="twice"):
        s.add([3, 3], _emb(2))
    with pytest.raises(ValueError, match="dim"):
        s.add([4], _emb(1, d=5))
    with pytest.raises(ValueError, match="store of encoder"):
        EmbeddingStore(tmp_path / "s", "other")


def test_append_is_per_shard(tmp_path):
    """Adding a shard writes only that shard: earlier shard files are never rewritten."""
    s = EmbeddingStore(tmp_path / "s", "enc")
    s.add(np.arange(100), _emb(100))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()}
    s.add(np.arange(100, 200), _emb(100, seed=2))
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "meta.json")
    assert len(s) == 200 and s.contains(np.arange(200)).all()


def test_lookup_is_exact_on_key_and_content(tmp_path):
    """A hit needs the stored key AND content: entries sharing one never answer for another."""
    s = EmbeddingStore(tmp_path / "s", "enc")
    e = _emb(3)
    s.add([1, 2, 3], e, [10, 20, 30])
    assert s.contains([1, 2, 3, 1, 2], [10, 20, 30, 20, 10]).tolist() == [True] * 3 + [False] * 2
    np.testing.assert_allclose(s.get([3, 1], [30, 10]), _unit(e[[2, 0]]), rtol=1e-6)
    assert len(s) == 3
    t = EmbeddingStore(tmp_path / "t", "enc")
    t.add(["a.JPEG", "b.JPEG"], e[:2], [5, 5])
    assert t.contains(["b.JPEG", "c.JPEG"], [5, 5]).tolist() == [True, False]


def test_store_folder_is_the_stage_cache_folder(tmp_path):
    from laionet.jobs.embedding_store import safe_name as _safe

    name = "open_clip:ViT-B-32:openai/x y"
    assert EmbeddingStore.at(tmp_path, "imagenetv2-top-images", name).dir == \
        tmp_path / _safe("imagenetv2-top-images") / _safe(name)
    with pytest.raises(TypeError, match="integers or strings"):
        EmbeddingStore(tmp_path / "s", "enc").contains([1.5])


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- captions: embed_with_store

def test_embed_with_store_embeds_only_missing_captions_and_aligns(tmp_path, hash_text_encoder):
    from laionet.jobs.embedding_store import embed_with_store

    enc = hash_text_encoder()
    store = EmbeddingStore(tmp_path, enc.name)
    keys = np.array([5, 100_000_003, 7, 42], np.int64)
    texts = ["five", "three", "seven", None]
    first = embed_with_store(enc, keys, texts, store, shard_size=3)
    assert enc.seen == texts  # the encoder itself reads a null caption as "None"
    assert len(list(store.dir.glob("*.keys.parquet"))) == 2
    np.testing.assert_allclose(first, enc.embed_texts(texts), atol=1e-6)  # float32 storage

    enc.seen.clear()
    keys2 = np.array([42, 8, 5, 8, 7], np.int64)  # stored, new, stored, repeated new, stored
    again = embed_with_store(enc, keys2, [None, "eight", "five", "eight", "seven"],
                             EmbeddingStore(tmp_path, enc.name))  # reopened from disk
    assert enc.seen == ["eight"]
    np.testing.assert_array_equal(again[[0, 2, 4]], first[[3, 0, 2]])
    np.testing.assert_array_equal(again[1], again[3])
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="is for 'other'"):
        embed_with_store(enc, [1], ["a"], EmbeddingStore(tmp_path / "o", "other"))
    with pytest.raises(ValueError, match="2 keys but 1 texts"):
        embed_with_store(enc, [1, 2], ["a"], store)


def test_a_changed_caption_under_the_same_row_key_is_embedded_again(tmp_path, hash_text_encoder):
    """Issue 13 item 2: the world regenerated with another seed gives other captions under the
    same (part, row) keys; stage 02 must embed them, not reuse the old seed's embeddings."""
    from laionet.jobs.embedding_store import embed_with_store

    enc = hash_text_encoder()
    keys = np.array([0, 1, 100_000_000], np.int64)
    seed0 = ["cougar in the snow", "a red guitar", "tabby cat"]
    seed1 = ["cougar American", "a red guitar", "lion roaring"]  # row 1 unchanged
    store = EmbeddingStore(tmp_path, enc.name)
    embed_with_store(enc, keys, seed0, store)
    enc.seen.clear()
    got = embed_with_store(enc, keys, seed1, EmbeddingStore(tmp_path, enc.name))
    assert enc.seen == ["cougar American", "lion roaring"]
    np.testing.assert_allclose(got, enc.embed_texts(seed1), atol=1e-6)


def test_string_keys_for_file_names(tmp_path, hash_text_encoder):
    from laionet.jobs.embedding_store import embed_with_store

    enc = hash_text_encoder()
    store = EmbeddingStore(tmp_path, enc.name)
    names = np.array(["n01_1.JPEG", "n01_2.JPEG"], dtype=object)
    a = embed_with_store(enc, names, ["a dog", "a cat"], store)
    b = embed_with_store(enc, names[::-1], ["a cat", "a dog"], EmbeddingStore(tmp_path, enc.name))
    assert enc.seen == ["a dog", "a cat"]
    np.testing.assert_array_equal(a[::-1], b)


def test_a_folder_of_the_old_caches_is_read_as_empty(tmp_path):
    """The caches this store replaced (keyed by row key or file name only) left meta.json
    without key_type and shards named *.keys.npy / part-*.keys.parquet: never served."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    old = tmp_path / "laion" / "enc"
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"encoder": "enc", "dim": 5, "dtype": "float16"}))
    np.save(old / "0000000000000000001-1-ab.keys.npy", np.array([1], np.int64))
    pq.write_table(pa.table({"image_key": ["x.JPEG"]}), old / "part-ab.keys.parquet")
    s = EmbeddingStore.at(tmp_path, "laion", "enc")
    assert len(s) == 0 and s.dim is None and not s.contains([1]).any()
    s.add([1], _emb(1))  # another dim and key type than the old cache: a fresh store
    assert EmbeddingStore(old, "enc").contains([1]).all() and EmbeddingStore(old, "enc").dim == 4
