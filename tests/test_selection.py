"""Stage 02: candidates from stage-01 tables, similarity through the cache, selection rules.

Selection rules run on hand-built tables; the MiniLM test embeds a few real web captions from
../shared/reference/img2dataset (skipped with a reason when the reference data is absent).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laionet.jobs import candidates as candidates_job
from laionet.jobs.embedding_store import EmbeddingStore, embed_captions
from laionet.method import selection as sel
from laionet.pipeline import sweeps
from laionet.sources import laion as laion_src

S = laion_src.KEY_STRIDE
LION = "n02129165"
COUGAR = "n02125311"
GUITAR = "n02676566"
TEXTS = {  # WordNet 3.0 glosses as in the authors' name_def strings
    LION: "lion which is large gregarious predatory feline of Africa and India having a tawny "
          "coat with a shaggy mane in the male",
    COUGAR: "cougar which is large American feline resembling a lion",
    GUITAR: "acoustic guitar which is sound is not amplified by electrical means",
}


# --------------------------------------------------------------------------------------------
# hand-built stage 01 outputs and LAION parts; stage 02's candidates over them


PART = "part-{:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"
# (part, row, [(lemma, wnid), ...]) in match order
MATCHED = [(0, 1, [("puma", COUGAR), ("cougar", COUGAR)]),
           (0, 2, [("lion", LION)]),
           (0, 4, [("lion", LION), ("mountain lion", COUGAR)]),   # multi-label: dropped
           (7, 0, [("acoustic guitar", GUITAR)]),
           (7, 3, [("painter", COUGAR)])]


def _write_stage01(m01, matched):
    """Stage-01 rows/ and matches/ tables of the ``matched`` rows, one file per part."""
    for sub in ("rows", "matches"):
        (m01 / sub).mkdir(parents=True)
    for p in sorted({m[0] for m in matched}):
        mine = [m for m in matched if m[0] == p]
        pq.write_table(pa.table({
            "part": pa.array([p] * len(mine), pa.int32()),
            "row": pa.array([r for _, r, _ in mine], pa.int64()),
            "key": pa.array([p * S + r for _, r, _ in mine], pa.int64()),
            "wnids": [sorted({w for _, w in lw}) for _, _, lw in mine],
            "n_classes": pa.array([len({w for _, w in lw}) for _, _, lw in mine], pa.int16()),
            "multi_label": [len({w for _, w in lw}) > 1 for _, _, lw in mine]}),
            m01 / "rows" / f"part-{p:05d}.parquet")
        flat = [(p, r, lem, w) for _, r, lw in mine for lem, w in lw]
        pq.write_table(pa.table({
            "part": pa.array([f[0] for f in flat], pa.int32()),
            "row": pa.array([f[1] for f in flat], pa.int64()),
            "key": pa.array([f[0] * S + f[1] for f in flat], pa.int64()),
            "lemma": [f[2] for f in flat], "wnid": [f[3] for f in flat]}),
            m01 / "matches" / f"part-{p:05d}.parquet")


def _write_world(tmp_path):
    """Two LAION parts and stage-01 rows/matches over them; returns (matches_dir, parts glob)."""
    laion = tmp_path / "laion"
    laion.mkdir()
    for p, n in [(0, 6), (7, 4)]:
        pq.write_table(pa.table({
            "SAMPLE_ID": np.arange(n, dtype=np.float64),
            "URL": [f"http://x/{p}/{r}.jpg" for r in range(n)],
            "TEXT": [f"caption {p}-{r}" if r != 2 else None for r in range(n)],
            "HEIGHT": np.full(n, 64), "WIDTH": np.full(n, 48 + p),
            "LICENSE": ["?"] * n,
            "NSFW": ["UNLIKELY", "UNSURE", None, "NSFW", "UNLIKELY", "UNLIKELY"][:n],
            "similarity": np.linspace(0.2, 0.4, n)}), laion / PART.format(p))
    _write_stage01(tmp_path / "01", MATCHED)
    return tmp_path / "01", str(laion / "part-*.parquet")


def _candidates(m01, parts, enc, out, texts=TEXTS, store=None):
    """Stage 02's candidates of every part, built and read back as one frame."""
    if store is None:
        store = EmbeddingStore(out.parent / f"store-{out.name}", enc.name)
    candidates_job.build_candidates(m01, parts, pd.Series(texts), enc, store, out)
    return pd.concat(candidates_job.CandidateFiles(out, batch_rows=2).batches(), ignore_index=True)


def test_candidates_drop_multi_label_and_join_by_part_row(tmp_path, hash_text_encoder):
    m01, parts = _write_world(tmp_path)
    enc = hash_text_encoder()
    cand = _candidates(m01, parts, enc, tmp_path / "02", {**TEXTS, "n99999999": "unmatched"})
    assert candidates_job.candidate_counts(tmp_path / "02") == {
        "n_matched_rows": 5, "n_single_label": 4, "n_multi_label_dropped": 1, "n_candidates": 4,
        "n_nsfw_unlikely": 1, "n_classes_matched": 3, "n_classes_single_label": 3}
    assert cand["key"].tolist() == [1, 2, 7 * S, 7 * S + 3]
    assert cand["wnid"].tolist() == [COUGAR, LION, GUITAR, COUGAR]
    assert [list(x) for x in cand["lemmas"]] == [["puma", "cougar"], ["lion"],
                                                 ["acoustic guitar"], ["painter"]]
    # columns come from the right (part, row): URL encodes both, TEXT null kept as null
    assert cand["URL"].tolist() == ["http://x/0/1.jpg", "http://x/0/2.jpg", "http://x/7/0.jpg",
                                    "http://x/7/3.jpg"]
    assert cand["TEXT"].isna().tolist() == [False, True, False, False]
    assert cand["NSFW"].tolist() == ["UNSURE", None, "UNLIKELY", "NSFW"]
    assert cand["WIDTH"].tolist() == [48, 48, 55, 55]
    # only the matched classes' texts were embedded (each once), never the class without a match
    assert sorted(t for t in enc.seen if t in TEXTS.values()) == sorted(TEXTS.values())
    assert "unmatched" not in enc.seen


def test_candidates_errors_name_the_problem(tmp_path, hash_text_encoder):
    m01, parts = _write_world(tmp_path)
    enc = hash_text_encoder()
    only0 = parts.replace("part-*", "part-00000*")
    with pytest.raises(FileNotFoundError, match="part 7"):
        _candidates(m01, only0, enc, tmp_path / "a")
    t = pa.table({"part": pa.array([0], pa.int32()), "row": pa.array([99], pa.int64()),
                  "key": pa.array([99], pa.int64())})
    with pytest.raises(IndexError, match="row 99"):
        laion_src.join_laion_columns(t, laion_src.part_files(parts))
    with pytest.raises(FileNotFoundError, match="run stage 01"):
        _candidates(tmp_path / "nowhere", parts, enc, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="run stage 02"):
        next(candidates_job.CandidateFiles(tmp_path / "b").batches())


def test_build_stage02_in_one_call_and_the_store_stage_08_reads(tmp_path, hash_text_encoder,
                                                                capsys):
    m01, parts = _write_world(tmp_path)
    enc, out = hash_text_encoder(), tmp_path / "02"
    files, counts = candidates_job.build_stage02(m01, parts, pd.Series(TEXTS), enc,
                                                 tmp_path / "cache", out)
    assert "2 part(s) computed, 0 resumed" in capsys.readouterr().out
    assert counts == candidates_job.candidate_counts(out) and counts["n_candidates"] == 4
    whole = pd.read_parquet(out / "candidates.parquet")
    pd.testing.assert_frame_equal(pd.concat(files.batches(), ignore_index=True), whole)
    again = candidates_job.build_stage02(m01, parts, pd.Series(TEXTS), enc, tmp_path / "cache", out)
    assert "0 part(s) computed, 2 resumed" in capsys.readouterr().out and again[1] == counts
    n_seen = len(enc.seen)
    emb = embed_captions(enc, whole, EmbeddingStore.at(tmp_path / "cache", "laion", enc.name))
    assert len(enc.seen) == n_seen and emb.shape == (4, enc.dim)  # all from stage 02's store
    np.testing.assert_allclose(emb[0], enc.embed_texts([whole["TEXT"][0]])[0], atol=1e-6)


def test_part_files_use_stage_01s_part_rule(tmp_path):
    """One rule (laionet.sources.laion): a file stage 01 would reject, stage 02 rejects, naming it."""
    _, parts = _write_world(tmp_path)
    assert sorted(laion_src.part_files(parts)) == [0, 7]
    odd = tmp_path / "laion" / "extra.parquet"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="extra.parquet: a LAION part file must be named"):
        laion_src.part_files(str(tmp_path / "laion" / "*.parquet"))
    with pytest.raises(ValueError, match="extra.parquet"):
        laion_src.part_numbers([odd])


# --------------------------------------------------------------------------------------------
# selection rules


def _table(**cols):
    n = len(next(iter(cols.values())))
    base = {"key": np.arange(n, dtype=np.int64), "wnid": ["n1"] * n, "NSFW": ["UNLIKELY"] * n,
            "similarity": np.full(n, 0.9)}
    base.update(cols)
    return pd.DataFrame(base)


def test_nsfw_rule_is_exactly_unlikely():
    df = _table(NSFW=["UNLIKELY", "UNSURE", "NSFW", None, "unlikely", " UNLIKELY", np.nan])
    assert sel.select_laionet(df, 0.5)["key"].tolist() == [0]
    assert sel.select_laionet(df, 0.5, nsfw_rule="unlikely_or_unsure")["key"].tolist() == [0, 1]
    assert len(sel.select_laionet(df, 0.5, nsfw_rule="ignore")) == len(df)
    with pytest.raises(ValueError, match="nsfw_rule"):
        sel.select_laionet(df, 0.5, nsfw_rule="strict")


def test_threshold_is_strict_and_nan_fails():
    t = 0.82
    df = _table(similarity=[t, np.nextafter(t, 1), np.nextafter(t, 0), np.nan, 1.0])
    assert sel.select_laionet(df, t)["key"].tolist() == [1, 4]
    assert sel.select_laionet(df, t, op=">=")["key"].tolist() == [0, 1, 4]


def test_multi_label_rows_never_selected():
    df = _table(wnid=["n1", None, "n2"], n_classes=[1, 2, 2], similarity=[0.9, 0.99, 0.99])
    assert sel.select_laionet(df, 0.5)["key"].tolist() == [0]


def test_skim_top_k_ties_by_key_and_small_classes():
    df = _table(key=[50, 10, 30, 20, 40, 60, 70],
                wnid=["a", "a", "a", "a", "a", "b", "c"],
                similarity=[0.9, 0.7, 0.9, 0.9, 0.5, 0.6, np.nan])
    top = sel.skim_top_k(df, k=3)
    assert top[top.wnid == "a"]["key"].tolist() == [20, 30, 50]   # three tied at 0.9: by key
    assert top[top.wnid == "b"]["key"].tolist() == [60]           # fewer than k: all kept
    assert "c" not in set(top["wnid"])                            # NaN never ranks
    # same answer whatever the input order
    shuffled = sel.skim_top_k(df.sample(frac=1, random_state=3), k=3)
    pd.testing.assert_frame_equal(top, shuffled)
    assert sel.skim_top_k(df, k=3, min_similarity=0.6)["key"].tolist() == [20, 30, 50]
    flagged = df.assign(wnid_is_in_recognized_text=[True, False, None, False, False, False, False])
    assert sel.skim_top_k(flagged, k=2)[lambda d: d.wnid == "a"]["key"].tolist() == [20, 10]


def test_threshold_curves_match_select_laionet():
    rng = np.random.default_rng(0)
    n = 2000
    df = _table(wnid=rng.choice([f"n{i}" for i in range(40)], n),
                NSFW=rng.choice(["UNLIKELY", "UNSURE", None], n, p=[0.8, 0.1, 0.1]),
                similarity=np.round(rng.uniform(0.3, 1.0, n), 2))  # rounding: many exact ties
    df.loc[::17, "similarity"] = np.nan
    ts = np.round(np.linspace(0.3, 1.0, 36), 2)
    for op in (">", ">="):
        curves = sel.threshold_curves(df, ts, op=op)
        brute = [(len(s := sel.select_laionet(df, t, op=op)), s["wnid"].nunique()) for t in ts]
        assert curves[["n_rows", "n_classes"]].to_numpy().tolist() == [list(b) for b in brute]


def test_truth_curve_precision_and_share_kept_per_kind():
    from laionet.method import calibration

    df = _table(key=[1, 2, 3, 4, 5], wnid=["a", "a", "b", "b", "b"],
                NSFW=["UNLIKELY"] * 4 + ["NSFW"], similarity=[0.9, 0.5, 0.8, 0.3, 0.99])
    truth = pd.DataFrame({"key": [1, 2, 3, 4, 5], "kind": ["unique", "polysemous", "unique",
                                                          "unique", "unique"],
                          "true_wnid": ["a", None, "c", "b", "b"]})
    curve, by_kind = calibration.truth_curve(df, truth, [0.0, 0.6, 0.85], 0.6)
    # above 0: keys 1-4 (5 fails NSFW), 1 and 4 correct; above 0.6: 1 and 3; above 0.85: 1
    assert curve["n_rows"].tolist() == [4, 2, 1]
    assert curve["precision"].tolist() == [0.5, 0.5, 1.0]
    assert curve["recall_of_true_rows"].tolist() == [1.0, 0.5, 0.5]
    assert by_kind.to_dict() == {"share kept": {"polysemous": 0.0, "unique": 2 / 3},
                                 "rows": {"polysemous": 1, "unique": 3}}


def test_lemma_similarities_count_each_matched_lemma():
    df = pd.DataFrame({"key": [1, 2, 3], "wnid": [COUGAR, COUGAR, LION],
                       "lemmas": [["puma", "cougar"], ["painter"], ["lion"]],
                       "similarity": [0.9, 0.2, 0.8]})
    long, counts = sel.lemma_similarities(df, COUGAR, ["cougar", "puma", "mountain lion",
                                                       "painter"])
    assert sorted(long["lemma"]) == ["cougar", "painter", "puma"]
    assert counts.to_dict() == {"cougar": 1, "puma": 1, "mountain lion": 0, "painter": 1}


def test_class_frequency_and_summarize_sweep(tmp_path):
    freq = sel.class_frequency(_table(wnid=["a", "b", "a", "a"]))
    assert freq["wnid"].tolist() == ["a", "b"] and freq["rel_freq"].tolist() == [0.75, 0.25]
    runs = []
    for t, n in [(0.7, 100), (0.5, 300)]:
        out = tmp_path / f"threshold={t}"
        out.mkdir()
        (out / "summary.json").write_text(json.dumps(
            {"threshold": t, "n_laionet": n, "n_classes_laionet": 3, "n_classes_matched": 4}))
        runs.append({"value": t, "out_dir": str(out), "figures_dir": str(out)})
    (tmp_path / "sweep.json").write_text(json.dumps({"param": "threshold", "runs": runs}))
    table = sweeps.selection_sweep(tmp_path / "sweep.json")
    assert table["threshold"].tolist() == [0.5, 0.7] and table["n_laionet"].tolist() == [300, 100]
    sweeps.plot_selection_sweep(table)
    runs.append({"value": 0.9, "out_dir": str(tmp_path / "missing")})
    (tmp_path / "sweep.json").write_text(json.dumps({"param": "threshold", "runs": runs}))
    with pytest.raises(FileNotFoundError, match="did not finish"):
        sweeps.selection_sweep(tmp_path / "sweep.json")


# --------------------------------------------------------------------------------------------
# similarity through the cache


class _CountingEncoder:
    """Wraps an encoder and counts the texts it embeds."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.n_embedded = inner, inner.name, inner.dim, 0

    def embed_texts(self, texts, batch_size=64, progress=False):
        self.n_embedded += len(texts)
        return self.inner.embed_texts(texts, batch_size=batch_size)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("laionet.models.text", reason="laionet.models not available")
    from laionet.models.text import load_text_encoder
    try:
        return load_text_encoder("minilm", device="cpu")
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"MiniLM weights not available: {e}")


def test_minilm_similarity_on_real_captions(minilm, reference, tmp_path):
    caps = pd.read_parquet(reference("img2dataset", "test_10000.parquet"), columns=["TEXT"])
    pick = {LION: "roaring lion", GUITAR: "Epiphone guitar", COUGAR: "Renaissance lion head"}
    texts = []
    for needle in pick.values():
        hit = caps["TEXT"][caps["TEXT"].str.contains(needle, regex=False, na=False)]
        assert len(hit), f"reference caption containing {needle!r} not found"
        texts.append(hit.iloc[0])
    enc = _CountingEncoder(minilm)
    cache = EmbeddingStore(tmp_path / "cache", enc.name)

    def similarity(name, wnids, captions=texts, store=cache):
        """Stage 02 on one LAION part holding ``captions``, row i matched to ``wnids[i]``."""
        (tmp_path / name / "laion").mkdir(parents=True)
        pq.write_table(pa.table({"URL": ["u"] * 3, "TEXT": captions, "NSFW": ["UNLIKELY"] * 3,
                                 "HEIGHT": [1] * 3, "WIDTH": [1] * 3}),
                       tmp_path / name / "laion" / PART.format(0))
        _write_stage01(tmp_path / name / "01", [(0, r, [("x", w)]) for r, w in enumerate(wnids)])
        return _candidates(tmp_path / name / "01", str(tmp_path / name / "laion" / "part-*"),
                           enc, tmp_path / name / "02", store=store)["similarity"]

    out = similarity("a", list(pick))
    first = enc.n_embedded
    # each similarity is the cosine of the two texts' embeddings
    cap = minilm.embed_texts(texts)
    cls = minilm.embed_texts([TEXTS[w] for w in pick])
    np.testing.assert_allclose(out, (cap * cls).sum(1), atol=2e-3)
    # on topic: a lion sketch is closer to "lion" than a guitar ad is to "lion"
    swapped = similarity("b", [LION] * 3)
    assert swapped[0] > swapped[1] + 0.2
    assert out[1] > swapped[1] + 0.2  # guitar text fits guitar
    # the second run embedded only the class text of its one class (classes without candidates
    # are never embedded: 1,000 ImageNet texts for a few hundred captions), never the captions again
    assert enc.n_embedded == first + 1
    with pytest.raises(KeyError, match="no synset text"):
        similarity("c", ["n99999999"] * 3)
    # another world seed: other captions under the same row keys are embedded, never reused
    again = similarity("d", list(pick), texts[::-1])
    fresh = similarity("e", list(pick), texts[::-1], EmbeddingStore(tmp_path / "fresh", enc.name))
    np.testing.assert_allclose(again, fresh, atol=1e-6)
    assert abs(again[0] - out[0]) > 0.1


# --------------------------------------------------------------------------------------------
# issue 13: duplicates, an empty LAIONet


def test_exact_duplicate_rows_are_dropped_and_counted_shared_urls_warned():
    df = _table(key=np.array([5, 1, 2, 3], np.int64), URL=["u1", "u1", "u2", "u2"],
                TEXT=["a lion", "a lion", "a lion", "another lion"])
    with pytest.warns(UserWarning, match="1 candidate row.*URL and caption.*dropped"):
        out, counts = sel.drop_duplicate_rows(df)
    assert out["key"].tolist() == [1, 2, 3]  # of the two exact copies, the smaller key stays
    assert counts == {"n_exact_duplicates": 1, "n_exact_duplicates_dropped": 1,
                      "n_duplicate_urls": 1}  # u2: two captions, both kept (and warned)
    with pytest.warns(UserWarning, match="kept"):
        kept, counts = sel.drop_duplicate_rows(df, drop=False)
    assert len(kept) == 4 and counts["n_exact_duplicates_dropped"] == 0
    clean = df.iloc[[1, 2]]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicates: no warning
        assert sel.drop_duplicate_rows(clean)[1] == {"n_exact_duplicates": 0,
                                                     "n_exact_duplicates_dropped": 0,
                                                     "n_duplicate_urls": 0}


def test_an_empty_laionet_is_an_error_naming_the_threshold_and_the_best_similarity():
    df = _table(similarity=[0.31, 0.87, 0.5], wnid=["n1", "n2", "n1"],
                NSFW=["UNLIKELY", "UNLIKELY", "NSFW"])
    sel.check_not_empty(sel.select_laionet(df, 0.6), df, 0.6)  # not empty: fine
    with pytest.raises(sel.EmptyLAIONet, match=r"threshold=0.99 keeps none of the 2 single-label "
                                               r"candidates.*best similarity seen is 0.8700 "
                                               r"\(class n2\).*-p 02.threshold"):
        sel.check_not_empty(sel.select_laionet(df, 0.99), df, 0.99)
    with pytest.raises(sel.EmptyLAIONet, match="passes nsfw_rule='paper'"):
        sel.check_not_empty(df.iloc[:0], df.assign(NSFW="NSFW"), 0.5)
    with pytest.raises(sel.EmptyLAIONet, match="no single-label candidate"):
        sel.check_not_empty(df.iloc[:0], df.iloc[:0], 0.5)
