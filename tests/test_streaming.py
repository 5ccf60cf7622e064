"""Stages 01 and 02 part by part (issue 11): outputs written as each part finishes, a finished part
never recomputed (calls counted), a failed run resumed, and the streamed stage-02 pipeline equal
to the whole-table one it replaced (``whole_table_candidates`` below, then the selection, curves
and calibration on one frame), on real stage-01 outputs of small LAION parts."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laionet.jobs import candidates as candidates_job
from laionet.jobs import match_parts
from laionet.jobs import parts as shards
from laionet.jobs.embedding_store import EmbeddingStore, embed_with_store
from laionet.method import calibration, caption_review, selection
from laionet.models import cosine_rowwise
from laionet.sources.laion import KEY_STRIDE, join_laion_columns, part_files

PAIRS = [("lion", "n02129165"), ("sea lion", "n02077923"), ("pizza", "n07873807"),
         ("tiger", "n02129604"), ("tiger cat", "n02123159"), ("puma", "n02125311"),
         ("cougar", "n02125311")]
TEXTS = pd.Series({"n02129165": "lion which is large gregarious predatory feline of Africa",
                   "n02077923": "sea lion which is any of several large eared seals",
                   "n07873807": "pizza which is Italian open pie made of thin bread dough",
                   "n02129604": "tiger which is large feline of forests in most of Asia",
                   "n02123159": "tiger cat which is a cat having a striped coat",
                   "n02125311": "cougar which is large American feline resembling a lion"})
WORDS = ["a", "lion", "sea", "pizza", "tiger", "cat", "puma", "cougar", "on", "the", "beach",
         "photo", "of", "red", "None"]
NSFW = ["UNLIKELY", "UNLIKELY", "UNSURE", "NSFW", None]


class CountingEncoder:
    """A stand-in text encoder (bag of words, hashed into 16 dims): deterministic, counts the
    captions it embedded."""

    name, dim, device = "bag-of-words-16", 16, "cpu"

    def __init__(self, fail_at=None):
        self.n, self.calls, self.fail_at = 0, 0, fail_at

    def embed_texts(self, texts, batch_size=64, progress=False):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError(f"encoder failed at call {self.calls}")
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in (t or "None").split():
                out[i, sum(map(ord, w)) % self.dim] += 1.0 + len(w) / 10
        self.n += len(texts)
        out[~out.any(axis=1), 0] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _laion(folder, number, n, seed):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(n)]
    if n > 1:
        texts[1] = None
    path = folder / f"part-{number:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"
    pq.write_table(pa.table({
        "SAMPLE_ID": np.arange(n, dtype=np.float64), "URL": [f"http://x/{number}/{r}" for r in range(n)],
        "TEXT": pa.array(texts, pa.string()), "HEIGHT": np.full(n, 64), "WIDTH": np.arange(n),
        "LICENSE": ["?"] * n, "NSFW": pa.array([NSFW[r % len(NSFW)] for r in range(n)], pa.string()),
        "similarity": np.full(n, 0.3)}), path, row_group_size=7)
    return path


@pytest.fixture
def world(tmp_path):
    """Three LAION parts (one with no caption at all) and stage 01 run on them for real."""
    src = tmp_path / "laion"
    src.mkdir()
    parts = [_laion(src, 0, 60, 1), _laion(src, 7, 45, 2), _laion(src, 3, 0, 3)]
    m01 = tmp_path / "01"
    match_parts.match_all(parts, PAIRS, m01, n_workers=1, batch_size=8)
    return parts, m01, str(src / "part-*.parquet")


def _counting(fn, calls):
    def task(path, part):
        calls.append(part)
        return fn(path, part=part)
    return task


# ------------------------------------------------------------------------------ stage 01

def test_stage01_writes_each_part_as_it_finishes_and_never_redoes_one(world, tmp_path):
    parts, _, _ = world
    out = tmp_path / "o1"
    task = functools.partial(match_parts.match_part, lemma_pairs=PAIRS, out_dir=str(out),
                             batch_size=8)
    seen, calls = [], []

    def watching(path, part):  # at the start of each part: the earlier parts' files exist
        seen.append(sorted(p.name for p in (out / "done").glob("*.json"))
                    if (out / "done").is_dir() else [])
        calls.append(part)
        return task(path, part=part)

    shards.map_parts(watching, parts, out, n_workers=1, fingerprint="f")
    assert calls == [0, 3, 7]
    assert seen == [[], ["part-00000.json"], ["part-00000.json", "part-00003.json"]]
    # streamed batch by batch: several row groups, the same rows as one batch gives
    assert pq.ParquetFile(shards.part_file(out, "matches", 0)).metadata.num_row_groups > 1
    one = tmp_path / "one"
    match_parts.match_part(parts[0], PAIRS, out_dir=one, batch_size=10_000)
    for kind in ("matches", "rows"):
        assert pq.read_table(shards.part_file(out, kind, 0)).equals(
            pq.read_table(shards.part_file(one, kind, 0)))
    again = []
    shards.map_parts(_counting(task, again), parts, out, n_workers=1, fingerprint="f")
    assert again == []  # every part finished: none recomputed
    shards.part_file(out, "done", 7, "json").unlink()
    shards.map_parts(_counting(task, again), parts, out, n_workers=1, fingerprint="f")
    assert again == [7]


def test_stage01_failed_run_resumes_at_the_failed_part(world, tmp_path):
    parts, _, _ = world
    out = tmp_path / "o1"
    task = functools.partial(match_parts.match_part, lemma_pairs=PAIRS, out_dir=str(out),
                             batch_size=8)

    def dies_on_7(path, part):
        if part == 7:
            raise OSError("killed")
        return task(path, part=part)

    res = shards.map_parts(dies_on_7, parts, out, n_workers=1, fingerprint="f", on_error="skip")
    assert sorted(res.done) == [0, 3] and len(res.failed) == 1
    assert not shards.part_file(out, "matches", 7).exists()
    assert not list(out.rglob(".*.tmp"))  # nothing half-written left behind
    calls = []
    shards.map_parts(_counting(task, calls), parts, out, n_workers=1, fingerprint="f")
    assert calls == [7]


# ------------------------------------------------------------------------------ stage 02

def whole_table_candidates(m01, laion_parts, texts, enc, store):
    """The whole-table stage 02 the per-part path replaced, as a reference: every stage-01 table
    at once, joined to the LAION parts by row, captions embedded through ``store``, each class
    text once; and its counts."""
    def read(kind, columns):
        return pa.concat_tables(pq.read_table(f, columns=columns)
                                for f in sorted((m01 / kind).glob("part-*.parquet")))

    single, counts = selection.single_label_table(
        read("rows", ["part", "row", "key", "wnids", "n_classes"]),
        read("matches", ["key", "lemma", "wnid"]))
    cand = join_laion_columns(single, part_files(laion_parts)).to_pandas()
    emb = embed_with_store(enc, cand["key"].to_numpy(), cand["TEXT"].to_numpy(object), store)
    wnids = pd.Index(pd.unique(cand["wnid"]))
    cls = enc.embed_texts(texts.loc[wnids].tolist())
    return cand.assign(similarity=cosine_rowwise(emb, cls[wnids.get_indexer(cand["wnid"])])), counts


def _reference(m01, glob, enc, folder):
    return whole_table_candidates(m01, glob, TEXTS, enc, EmbeddingStore(folder, enc.name))


def _build(m01, glob, out, enc, calls=None, **kw):
    store = EmbeddingStore(out.parent / f"store-{out.name}", enc.name)
    return candidates_job.build_candidates(m01, glob, TEXTS, enc, store, out, chunk_rows=3,
                                      read_batch=5, on_part=None if calls is None else
                                      calls.append, **kw)


def test_stage02_streamed_outputs_equal_the_in_memory_pipeline(world, tmp_path):
    _, m01, glob = world
    ref, counts = _reference(m01, glob, CountingEncoder(), tmp_path / "ref-store")
    assert len(ref) > 20 and ref["NSFW"].isna().any()  # (a null caption never matches)
    out = tmp_path / "02"
    _build(m01, glob, out, CountingEncoder())
    assert candidates_job.assemble_candidates(out, out / "candidates.parquet") == len(ref)
    got = pd.read_parquet(out / "candidates.parquet")
    assert list(got.columns) == selection.CANDIDATE_COLUMNS
    pd.testing.assert_frame_equal(got.assign(lemmas=got["lemmas"].map(list)),
                                  ref[selection.CANDIDATE_COLUMNS].assign(
                                      lemmas=ref["lemmas"].map(list)), check_dtype=False)
    assert np.array_equal(got["similarity"].to_numpy(), ref["similarity"].to_numpy())
    c = candidates_job.candidate_counts(out)
    assert c == {**counts, "n_candidates": len(ref),
                 "n_nsfw_unlikely": int((ref["NSFW"] == "UNLIKELY").sum())}
    files = candidates_job.CandidateFiles(out, batch_rows=4)
    for rule in ("paper", "ignore"):
        thr = float(ref["similarity"].median())
        pd.testing.assert_frame_equal(
            selection.select_laionet(files, thr, rule).drop(columns="lemmas"),
            selection.select_laionet(ref, thr, rule)[selection.CANDIDATE_COLUMNS]
            .drop(columns="lemmas"), check_dtype=False)
        grid = np.linspace(0, 1, 23)
        pd.testing.assert_frame_equal(selection.threshold_curves(files, grid, rule),
                                      selection.threshold_curves(ref, grid, rule))
        ok = ref[selection.nsfw_mask(ref["NSFW"], rule)]
        counts_, _, n = selection.similarity_histogram(files, rule, bins=9)
        assert n == ok["similarity"].notna().sum()
        assert counts_.tolist() == np.histogram(ok["similarity"].dropna().to_numpy(np.float64),
                                                9)[0].tolist()
        n_matched = ref["wnid"].nunique()
        assert selection.sfw_stats(files, rule) == selection.sfw_stats(ref, rule)
        assert selection.sfw_stats(files, rule)["classes"] == sorted(ref["wnid"].unique())
        assert calibration.class_share_threshold(files, n_matched, rule, share=0.5) == \
            calibration.class_share_threshold(ref, n_matched, rule, share=0.5)
        for data in (files, ref):  # an empty LAIONet: the same error, naming the best similarity
            with pytest.raises(selection.EmptyLAIONet, match=f"{ok['similarity'].max():.4f}"):
                selection.check_not_empty(ref.iloc[:0], data, 1.0, rule)
        pd.testing.assert_frame_equal(caption_review.kept_and_dropped(files, thr, rule)[0],
                                      caption_review.kept_and_dropped(ref, thr, rule)[0])
    long, per = selection.lemma_similarities(files, "n02125311", ["puma", "cougar"])
    rlong, rper = selection.lemma_similarities(ref, "n02125311", ["puma", "cougar"])
    pd.testing.assert_series_equal(per, rper)
    assert long["key"].tolist() == rlong["key"].tolist()


def test_stage02_resumes_and_never_redoes_a_finished_part(world, tmp_path):
    _, m01, glob = world
    out = tmp_path / "02"
    calls = []
    # call 1 embeds the synset texts, call 2 part 0's first chunk: the third dies inside part 0
    enc = CountingEncoder(fail_at=3)
    with pytest.raises(shards.PartError, match="encoder failed"):
        _build(m01, glob, out, enc, calls)
    done_first = sorted(int(p.stem[5:]) for p in (out / "done").glob("*.json"))
    assert calls == [0, 3, 7] and done_first == [3, 7]  # part 0 died; the others finished
    assert sorted(p.name for p in (out / "candidates").glob("*.parquet")) == \
        [f"part-{p:05d}.parquet" for p in done_first]
    assert not list(out.rglob(".*.tmp"))
    calls.clear()
    enc = CountingEncoder()
    res = _build(m01, glob, out, enc, calls)
    assert calls == [0] and sorted(res.skipped) == done_first
    n_part0 = pq.ParquetFile(out / "candidates" / "part-00000.parquet").metadata.num_rows
    assert enc.n <= n_part0 + len(TEXTS)  # only part 0's captions (+ the synset texts)
    calls.clear()
    again = CountingEncoder()
    _build(m01, glob, out, again, calls)
    assert calls == [] and again.calls == 1  # nothing recomputed: only the synset texts embedded
    # a part whose stage-01 table changed is redone (its fingerprint is in the marker)
    rows7 = shards.part_file(m01, "rows", 7)
    pq.write_table(pq.read_table(rows7).slice(0, 3), rows7)
    calls.clear()
    _build(m01, glob, out, CountingEncoder(), calls)
    assert calls == [7]
    # the output after all this equals one uninterrupted run
    fresh = tmp_path / "fresh"
    _build(m01, glob, fresh, CountingEncoder())
    for f in (fresh / "candidates").glob("*.parquet"):
        assert pq.read_table(f).equals(pq.read_table(out / "candidates" / f.name)), f.name


def test_stage02_checks_inputs_before_any_work(world, tmp_path):
    _, m01, glob = world
    enc = CountingEncoder()
    with pytest.raises(KeyError, match="no synset text"):
        candidates_job.build_candidates(m01, glob, TEXTS.drop("n02129165"), enc,
                                   EmbeddingStore(tmp_path / "s", enc.name), tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="part 7 has matches but no LAION file"):
        candidates_job.build_candidates(m01, glob.replace("part-*", "part-0000[03]*"), TEXTS, enc,
                                   EmbeddingStore(tmp_path / "s", enc.name), tmp_path / "o")
    assert enc.n == 0 and not (tmp_path / "o" / "candidates").exists()


def test_store_lookups_of_one_part_load_only_that_parts_shards(world, tmp_path):
    _, m01, glob = world
    out = tmp_path / "02"
    _build(m01, glob, out, CountingEncoder())
    store = EmbeddingStore(tmp_path / "store-02", CountingEncoder.name)
    cand7 = pd.read_parquet(out / "candidates" / "part-00007.parquet")
    from laionet.jobs.embedding_store import content_hashes
    from laionet.models.common import clean_texts

    hit = store.contains(cand7["key"], content_hashes(clean_texts(list(cand7["TEXT"]))))
    assert hit.all()
    loaded = {int(k.min()) // KEY_STRIDE for k, _ in store._parts.values()}
    assert loaded == {7} and len(store._parts) < len(store._shards)
    assert len(store) == sum(pq.ParquetFile(f).metadata.num_rows
                             for f in (out / "candidates").glob("*.parquet"))
