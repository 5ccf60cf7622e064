"""Stage 02: turn lemma matches into LAIONet (paper_spec A4-A6, A8, A9).

Pipeline, each step a function:
1. ``load_candidates``: single-label rows of stage 01 (``n_classes == 1``; multi-label rows are
   dropped exactly as A5 does: they never get a similarity), their matched lemmas, and
   TEXT/URL/NSFW/HEIGHT/WIDTH joined by (part, row) from the LAION parts.
2. ``add_similarity``: cosine of the L2-normalised caption embedding (through the on-disk
   embedding cache, so sweeps cost seconds) and the embedding of its class's synset text
   (``name_def`` = "<head> which is <definition>" by default).
3. ``select_laionet``: NSFW == "UNLIKELY" exactly, similarity strictly above the threshold;
   ``check_not_empty`` makes an empty result an error naming the best similarity seen.
   (``drop_duplicate_rows`` first drops exact URL+caption duplicates, counted and warned.)
4. ``skim_top_k``: the k most similar rows per class (Appendix B).
Curves for the threshold figures (``threshold_curves``, ``lemma_similarities``,
``class_frequency``) are vectorised; ``summarize_sweep``/``plot_sweep`` compare sweep runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import read_json, read_part
from .keys import KEY_STRIDE, part_numbers, row_key

# Thresholds the authors used (A6, A9); the MiniLM demo threshold is calibrated in notebook 02.
PAPER_THRESHOLDS = {"open_clip:ViT-B-32": 0.82, "clip-vit-base-patch32": 0.82,
                    "all-mpnet-base-v2": 0.58}
LAION_COLUMNS = ("TEXT", "URL", "NSFW", "HEIGHT", "WIDTH")
CANDIDATE_COLUMNS = ["key", "part", "row", "wnid", "lemmas", "TEXT", "URL", "NSFW",
                     "HEIGHT", "WIDTH", "similarity"]
# nsfw_rule -> accepted NSFW tags; null is never accepted except by "ignore".
NSFW_RULES = {"paper": ("UNLIKELY",),                     # A6: exactly "UNLIKELY"
              "unlikely_or_unsure": ("UNLIKELY", "UNSURE"),
              "ignore": None}                             # LAIONet v1 (arXiv v1): NSFW kept


# --------------------------------------------------------------------------------------------
# 1. candidates


def _read_stage01(folder: Path, columns: Sequence[str]) -> pa.Table:
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no part-*.parquet files; run stage 01 "
                                "(notebooks/01_synset_matching.py) or fix matches_dir")
    tables = []
    for f in files:
        t = pq.read_table(f, columns=list(columns))
        missing = [c for c in columns if c not in t.column_names]
        if missing:
            raise ValueError(f"{f}: missing column(s) {missing} (stage 01 contract, "
                             "docs/DEVELOPING.md)")
        tables.append(t)
    return pa.concat_tables(tables)


def single_label_rows(matches_dir: str | Path) -> tuple[pa.Table, dict]:
    """Rows of stage 01 that matched lemmas of exactly one class, with that ``wnid`` and the
    matched ``lemmas`` (list, in match-table order); plus counts (rows, multi-label dropped)."""
    matches_dir = Path(matches_dir)
    rows = _read_stage01(matches_dir / "rows", ["part", "row", "key", "wnids", "n_classes"])
    single = rows.filter(pc.equal(rows["n_classes"], 1))
    single = single.append_column("wnid", pc.list_element(single["wnids"], 0)).drop(
        ["wnids", "n_classes"])
    matches = _read_stage01(matches_dir / "matches", ["key", "lemma", "wnid"])
    # lemma lists per key (match-table order kept: single-threaded group_by), aligned by key
    lemmas = matches.group_by("key", use_threads=False).aggregate([("lemma", "list")])
    single = single.sort_by("key")
    pos = pc.index_in(single["key"], value_set=lemmas["key"])
    single = single.append_column("lemmas", lemmas["lemma_list"].take(pos))
    if single["lemmas"].null_count:
        bad = single.filter(pc.is_null(single["lemmas"]))["key"][0].as_py()
        raise ValueError(f"{matches_dir}: row key {bad} is in rows/ but has no lemma in "
                         "matches/; stage 01 outputs are inconsistent, rerun stage 01")
    # classes with any matched row (the authors' labels-dict keys, 978 on LAION-400M) and
    # classes with single-label rows (those stage 02 can keep)
    counts = {"n_matched_rows": rows.num_rows, "n_single_label": single.num_rows,
              "n_multi_label_dropped": rows.num_rows - single.num_rows,
              "n_classes_matched": len(pc.unique(pc.list_flatten(rows["wnids"]))),
              "n_classes_single_label": len(pc.unique(single["wnid"]))}
    return single, counts


def part_files(laion_parts: str | Iterable[str | Path]) -> dict[int, Path]:
    """part number -> file, from a glob (relative to the project root) or a list of paths."""
    from .paths import project_root, resolve

    if isinstance(laion_parts, (str, Path)):
        pattern = str(laion_parts)
        base = project_root() if not Path(pattern).is_absolute() else Path("/")
        files = sorted(base.glob(pattern.lstrip("/")) if any(ch in pattern for ch in "*?[")
                       else [resolve(pattern)])
    else:
        files = [resolve(p) for p in laion_parts]
    out = {n: f for f, n in part_numbers(files).items()}  # laionet.keys: the one part rule
    if not out:
        raise FileNotFoundError(f"laion_parts {laion_parts!r} matches no file")
    return out


def join_laion_columns(rows: pa.Table, parts: dict[int, Path],
                       columns: Sequence[str] = LAION_COLUMNS) -> pa.Table:
    """Add LAION ``columns`` to ``rows`` (part, row, ...) by row position, one part at a time:
    only the needed columns are read, then ``take(row)``. Output keeps ``rows``' order."""
    if rows.num_rows == 0:
        empty = {c: pa.array([], pa.string() if c in ("TEXT", "URL", "NSFW") else pa.int64())
                 for c in columns}
        return pa.Table.from_pydict({**rows.to_pydict(), **empty})
    part = rows["part"].to_numpy()
    row = rows["row"].to_numpy()
    key = rows["key"].to_numpy()
    bad_key = np.flatnonzero(key != row_key(part, row))
    if len(bad_key):
        i = bad_key[0]
        raise ValueError(f"row key {key[i]} != part {part[i]} * {KEY_STRIDE} + row {row[i]}: "
                         "stage 01 keys are corrupt; rerun stage 01")
    order = np.argsort(part, kind="stable")
    pieces, positions = [], []
    for p in np.unique(part):
        if int(p) not in parts:
            raise FileNotFoundError(f"part {int(p)} has matches but no LAION file among "
                                    f"laion_parts (have parts {sorted(parts)}); fix laion_parts")
        sel = order[np.searchsorted(part[order], p, "left"):np.searchsorted(part[order], p, "right")]
        table = read_part(parts[int(p)], columns=list(columns))
        too_far = row[sel] >= table.num_rows
        if too_far.any():
            raise IndexError(f"{parts[int(p)]}: row {int(row[sel][too_far][0])} is past its "
                             f"{table.num_rows} rows; stage 01 ran on another version of this part")
        pieces.append(table.take(pa.array(row[sel])))
        positions.append(sel)
    joined = pa.concat_tables(pieces).take(pa.array(np.argsort(np.concatenate(positions))))
    out = rows
    for c in columns:
        out = out.append_column(c, joined[c])
    return out


def load_candidates(matches_dir: str | Path, laion_parts: str | Iterable[str | Path]
                    ) -> tuple[pd.DataFrame, dict]:
    """Single-label matched rows with their LAION columns (no similarity yet) and counts."""
    single, counts = single_label_rows(matches_dir)
    table = join_laion_columns(single, part_files(laion_parts))
    return table.to_pandas(), counts


# --------------------------------------------------------------------------------------------
# 2. similarity


def synset_texts(classes: pd.DataFrame, query: str = "name_def") -> pd.Series:
    """wnid -> synset text of the chosen query form (a column of ``class_table``)."""
    if query not in classes.columns:
        forms = [c for c in classes.columns if c not in ("wnid", "lemmas", "head", "definition")]
        raise ValueError(f"query {query!r} is not a class-table column; choose one of {forms}")
    return classes.set_index("wnid")[query]


def add_similarity(candidates: pd.DataFrame, texts_by_wnid: pd.Series, encoder,
                   store, batch_size: int = 64, progress: bool = False,
                   stats: dict | None = None) -> pd.DataFrame:
    """Add ``similarity``: cosine of each caption (embedded through ``store``, an
    ``EmbeddingStore`` keyed by row key and caption; null -> "None") and the synset text of its
    wnid (each class text embedded once). ``stats`` (a dict) gets ``n_embedded``, the captions
    embedded by this call (per part: ``embed_captions_by_part``)."""
    from .encoders.common import cosine_rowwise

    unknown = sorted(set(candidates["wnid"]) - set(texts_by_wnid.index))
    if unknown:
        raise KeyError(f"wnid(s) {unknown[:5]} have matches but no synset text; the class table "
                       "given to stage 02 differs from stage 01's `classes`")
    wnids = pd.Index(pd.unique(candidates["wnid"]))  # only classes with candidates: each text once
    class_emb = encoder.embed_texts(texts_by_wnid.loc[wnids].tolist(), batch_size=batch_size)
    cap_emb, n_new = embed_captions_by_part(encoder, candidates["key"].to_numpy(np.int64),
                                            candidates["TEXT"].to_numpy(object), store,
                                            batch_size=batch_size, progress=progress)
    out = candidates.copy()
    out["similarity"] = cosine_rowwise(cap_emb, class_emb[wnids.get_indexer(out["wnid"])])
    if stats is not None:  # not in out.attrs: pandas would write them into the parquet files
        stats["n_embedded"] = n_new  # captions embedded now (the others came from the store)
    return out


def embed_captions_by_part(encoder, keys: np.ndarray, texts: np.ndarray, store,
                           batch_size: int = 64, progress: bool = False) -> tuple[np.ndarray, int]:
    """Caption embeddings aligned to ``keys``, embedded through ``store`` one LAION part at a
    time (the part is ``key // KEY_STRIDE``): each part's new embeddings are one store shard,
    written as soon as they are made, so a killed stage 02 resumes at the part it was in and
    never embeds a finished part again. Returns the rows and how many captions were embedded."""
    from .embedding_store import embed_with_store

    keys = np.asarray(keys, np.int64)
    out = np.zeros((len(keys), store.dim or 0), np.float32)
    before = len(store)
    for part in np.unique(keys // KEY_STRIDE):
        idx = np.flatnonzero(keys // KEY_STRIDE == part)
        emb = embed_with_store(encoder, keys[idx], texts[idx], store, batch_size=batch_size,
                               progress=progress)
        if out.shape[1] != emb.shape[1]:
            out = np.zeros((len(keys), emb.shape[1]), np.float32)
        out[idx] = emb
    return out, len(store) - before


# --------------------------------------------------------------------------------------------
# 3. selection and 4. skim


def drop_duplicate_rows(candidates: pd.DataFrame, drop: bool = True) -> tuple[pd.DataFrame, dict]:
    """Rows repeating an earlier row's URL *and* caption (exact duplicates, e.g. a part mirrored
    twice into one file) are dropped when ``drop``, the one with the smallest key kept; either
    way they are counted and warned about, as are URLs still shared by rows with other captions.

    Not a deviation from the paper: LAION-400M was built with URL+caption duplicates removed,
    so on its parts nothing is dropped (the authors have no such step because they need none).
    Returns the table (order kept) and counts for summary.json.
    """
    import warnings

    order = candidates.sort_values("key", kind="stable")
    repeat = order.duplicated(["URL", "TEXT"]).reindex(candidates.index).to_numpy(bool)
    n_exact = int(repeat.sum())
    out = candidates[~repeat].reset_index(drop=True) if drop else candidates
    n_urls = int(out.duplicated("URL").sum())
    if n_exact:
        warnings.warn(f"{n_exact} candidate row(s) repeat an earlier row's URL and caption "
                      f"(exact duplicates): {'dropped' if drop else 'kept (drop_duplicates=False)'}",
                      stacklevel=2)
    if n_urls:
        warnings.warn(f"{n_urls} candidate row(s) share their URL with an earlier row but not "
                      "its caption: kept (the same image may be downloaded twice)", stacklevel=2)
    return out, {"n_exact_duplicates": n_exact, "n_exact_duplicates_dropped": n_exact if drop else 0,
                 "n_duplicate_urls": n_urls}


class EmptyLAIONet(ValueError):
    """No candidate passes the selection: an error, not an empty table downstream stages run on."""


def check_not_empty(laionet: pd.DataFrame, candidates: pd.DataFrame, threshold: float,
                    nsfw_rule: str = "paper") -> None:
    """Raise ``EmptyLAIONet`` saying why and what to change when ``laionet`` has no row: no
    single-label candidate, none passing the NSFW rule, or the best similarity seen is not above
    the threshold (its value and class named)."""
    if len(laionet):
        return
    if not len(candidates):
        raise EmptyLAIONet("LAIONet is empty: stage 01 left no single-label candidate (no caption "
                           "matched the lemmas of exactly one class); check laion_parts and classes")
    ok = candidates[nsfw_mask(candidates["NSFW"], nsfw_rule)]
    if not len(ok):
        raise EmptyLAIONet(f"LAIONet is empty: none of the {len(candidates)} single-label "
                           f"candidates passes nsfw_rule={nsfw_rule!r}; try "
                           "`-p 02.nsfw_rule unlikely_or_unsure` (or check the NSFW column)")
    sims = ok["similarity"].astype("float64")
    if sims.isna().all():
        raise EmptyLAIONet(f"LAIONet is empty: all {len(ok)} candidates have no similarity")
    best = ok.loc[sims.idxmax()]
    raise EmptyLAIONet(
        f"LAIONet is empty: threshold={threshold} keeps none of the {len(ok)} single-label "
        f"candidates passing nsfw_rule={nsfw_rule!r}; the best similarity seen is "
        f"{float(best['similarity']):.4f} (class {best['wnid']}). Lower the threshold below "
        "that (`-p 02.threshold VALUE`; the paper: 0.82 for CLIP ViT-B/32, 0.58 for mpnet)")


def nsfw_mask(nsfw: pd.Series, rule: str = "paper") -> np.ndarray:
    """Rows the NSFW rule keeps: "paper" = exactly "UNLIKELY" (UNSURE, NSFW, null excluded)."""
    if rule not in NSFW_RULES:
        raise ValueError(f"nsfw_rule {rule!r}: choose one of {sorted(NSFW_RULES)}")
    allowed = NSFW_RULES[rule]
    if allowed is None:
        return np.ones(len(nsfw), bool)
    return nsfw.isin(allowed).to_numpy(bool)  # null is never in ``allowed``


def above(similarity: pd.Series | np.ndarray, threshold: float, op: str = ">") -> np.ndarray:
    """similarity > threshold (the paper's dataset creation) or ">=" (its notebooks, E.10);
    NaN always fails."""
    s = np.asarray(similarity, dtype=np.float64)
    if op == ">":
        return s > threshold
    if op == ">=":
        return s >= threshold
    raise ValueError(f"op {op!r}: use '>' (paper) or '>='")


def select_laionet(candidates: pd.DataFrame, threshold: float, nsfw_rule: str = "paper",
                   op: str = ">") -> pd.DataFrame:
    """LAIONet: candidates with the NSFW rule and similarity strictly above ``threshold``.

    A table that still holds multi-label rows (``n_classes`` > 1, or no ``wnid``) loses them:
    the paper never gives such rows a similarity.
    """
    keep = nsfw_mask(candidates["NSFW"], nsfw_rule) & above(candidates["similarity"], threshold, op)
    keep &= candidates["wnid"].notna().to_numpy()
    if "n_classes" in candidates.columns:
        keep &= candidates["n_classes"].to_numpy() == 1
    return candidates[keep].reset_index(drop=True)


def skim_top_k(df: pd.DataFrame, k: int = 50, min_similarity: float | None = None
               ) -> pd.DataFrame:
    """Per wnid the ``k`` rows of highest similarity (all of them when fewer), ties broken by
    the smaller key; output sorted by wnid, then rank.

    The authors' skim first kept similarity > 0.58 whatever the encoder (MPNet's threshold,
    E.17): pass ``min_similarity=0.58`` to reproduce that. If the OCR flag
    ``wnid_is_in_recognized_text`` is present, rows flagged True or null are dropped (A8 step 2).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    keep = df["similarity"].notna().to_numpy()
    if min_similarity is not None:
        keep &= above(df["similarity"], min_similarity)
    if "wnid_is_in_recognized_text" in df.columns:
        keep &= df["wnid_is_in_recognized_text"].eq(False).to_numpy()
    d = df[keep]
    order = np.lexsort((d["key"].to_numpy(), -d["similarity"].to_numpy(np.float64),
                        d["wnid"].to_numpy(str)))
    d = d.iloc[order]
    rank = d.groupby("wnid", sort=False).cumcount().to_numpy()
    return d[rank < k].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# curves and summaries for the figures


def threshold_curves(candidates: pd.DataFrame, thresholds: Sequence[float],
                     nsfw_rule: str = "paper", op: str = ">") -> pd.DataFrame:
    """Dataset size and classes with >= 1 row vs threshold (exactly what ``select_laionet``
    would keep), by sorting once and ``searchsorted``."""
    ok = candidates[nsfw_mask(candidates["NSFW"], nsfw_rule) & candidates["similarity"].notna()
                    .to_numpy()]
    sims = np.sort(ok["similarity"].to_numpy(np.float64))
    best = np.sort(ok.groupby("wnid")["similarity"].max().to_numpy(np.float64))
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if op == ">" else "left"  # ">": values equal to t fail
    return pd.DataFrame({"threshold": t,
                         "n_rows": len(sims) - np.searchsorted(sims, t, side),
                         "n_classes": len(best) - np.searchsorted(best, t, side)})


def lemma_similarities(candidates: pd.DataFrame, wnid: str,
                       class_lemmas: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.Series]:
    """Long table (lemma, similarity, key) of one class, a row counted under every lemma it
    matched (as the authors' per-lemma histograms); and rows per lemma, including the class's
    lemmas that matched nothing (e.g. "mountain lion": 0 after the multi-label drop)."""
    one = candidates[candidates["wnid"] == wnid]
    long = one[["key", "lemmas", "similarity"]].explode("lemmas").rename(
        columns={"lemmas": "lemma"})
    counts = long["lemma"].value_counts()
    counts = counts.reindex(list(dict.fromkeys([*class_lemmas, *counts.index])), fill_value=0)
    return long.reset_index(drop=True), counts.rename("n_rows")


def class_frequency(laionet: pd.DataFrame) -> pd.DataFrame:
    """wnid, n_rows, rel_freq (share of the dataset), most frequent first (figure B3)."""
    n = laionet["wnid"].value_counts().rename_axis("wnid").reset_index(name="n_rows")
    n["rel_freq"] = n["n_rows"] / max(len(laionet), 1)
    return n


def summary(candidates: pd.DataFrame, laionet: pd.DataFrame, counts: dict,
            threshold: float) -> dict:
    """The numbers of stage 02 in one JSON-able dict (written as summary.json).

    ``n_classes_matched``: classes with any matched row, multi-label ones included (the paper's
    978); ``n_classes_single_label``: classes with single-label rows (the candidates' classes,
    those a threshold can keep); both from ``counts`` (``single_label_rows``) when given there.
    """
    return {"n_classes_matched": int(candidates["wnid"].nunique()), **counts,
            "n_classes_single_label": int(candidates["wnid"].nunique()),
            "threshold": float(threshold), "n_candidates": int(len(candidates)),
            "n_nsfw_unlikely": int((candidates["NSFW"] == "UNLIKELY").sum()),
            "n_laionet": int(len(laionet)), "n_classes_laionet": int(laionet["wnid"].nunique())}


def summarize_sweep(sweep_json_path: str | Path) -> pd.DataFrame:
    """One row per run of a stage-02 sweep (``run_all.sh sweep 02 threshold ...``): the swept
    value and that run's summary.json (n_laionet, n_classes_laionet, ...)."""
    sweep_json_path = Path(sweep_json_path)
    sweep = read_json(sweep_json_path)
    rows = []
    for run in sweep["runs"]:
        path = Path(run["out_dir"]) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in {sweep_json_path}) is missing: that run "
                                    "did not finish; rerun the sweep")
        rows.append({sweep["param"]: run["value"], **json.loads(path.read_text()),
                     "out_dir": run["out_dir"]})
    return pd.DataFrame(rows).sort_values(sweep["param"]).reset_index(drop=True)


def plot_sweep(table: pd.DataFrame, param: str = "threshold"):
    """Two panels: classes kept and dataset size across a sweep's runs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].plot(table[param], table["n_classes_laionet"], "o-")
    axes[0].axhline(table["n_classes_matched"].max(), ls=":", c="grey", label="classes matched")
    axes[0].set(xlabel=param, ylabel="classes with >= 1 image")
    axes[0].legend()
    axes[1].plot(table[param], table["n_laionet"], "o-")
    axes[1].set(xlabel=param, ylabel="LAIONet rows", yscale="log")
    fig.suptitle(f"Stage 02 sweep over {param}")
    return fig
