"""Stage 02's rule: which matched captions become LAIONet (paper_spec A4-A6, A8, A9).

Pure functions over tables (no files; ``laionet.jobs.candidates`` makes and reads them):
- ``single_label_table``: the rows of stage 01 whose lemmas name exactly one class (A5: the
  multi-label rows never get a similarity);
- ``select_laionet``: NSFW == "UNLIKELY" exactly (A6), similarity strictly above the threshold;
  ``check_not_empty`` makes an empty result an error naming the best similarity seen;
  ``drop_duplicate_rows`` drops exact URL+caption duplicates, counted and warned;
- ``skim_top_k``: the k most similar rows per class (Appendix B);
- the curves of the threshold figures: ``threshold_curves``, ``similarity_histogram``,
  ``sfw_stats``, ``lemma_similarities``, ``class_frequency``.

Every function that reads candidates takes ``data``: a DataFrame, or a table on disk read batch
by batch (anything with ``.batches(columns, filter)``, e.g. ``jobs.candidates.CandidateFiles``):
one code path, whatever the size; memory is one batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from laionet.paper import NSFW_RULES

CANDIDATE_COLUMNS = ["key", "part", "row", "wnid", "lemmas", "TEXT", "URL", "NSFW",
                     "HEIGHT", "WIDTH", "similarity"]


def batches(data, columns: Sequence[str] | None = None,
            filter: Callable[[pd.DataFrame], np.ndarray] | None = None) -> Iterator[pd.DataFrame]:
    """The rows of ``data`` (a DataFrame, or a table on disk with ``.batches(columns, filter)``)
    as DataFrames; ``filter(df) -> bool mask`` keeps only those rows (a batch may be empty)."""
    if not isinstance(data, pd.DataFrame):
        yield from data.batches(columns, filter)
        return
    missing = [c for c in columns or () if c not in data.columns]
    if missing:
        raise KeyError(f"the candidates lack column(s) {missing}")
    df = data if columns is None else data[list(columns)]
    yield df[filter(df)] if filter is not None else df


def concat_frames(frames: Iterable[pd.DataFrame], columns: Sequence[str] | None = None
                  ) -> pd.DataFrame:
    """The frames as one (an empty one keeps the first frame's columns, else ``columns``)."""
    frames = list(frames)
    non_empty = [f for f in frames if len(f)]
    out = pd.concat(non_empty or frames[:1], ignore_index=True) if frames else pd.DataFrame(
        columns=list(columns or CANDIDATE_COLUMNS))
    return out.reset_index(drop=True)


def single_label_table(rows: pa.Table, matches: pa.Table, where: str | Path = "stage 01"
                       ) -> tuple[pa.Table, dict]:
    """``single_label_rows`` of stage-01 ``rows`` and ``matches`` tables (one part or several);
    the output is sorted by key."""
    single = rows.filter(pc.equal(rows["n_classes"], 1))
    single = single.append_column("wnid", pc.list_element(single["wnids"], 0)).drop(
        ["wnids", "n_classes"])
    # lemma lists per key (match-table order kept: single-threaded group_by), aligned by key
    lemmas = matches.group_by("key", use_threads=False).aggregate([("lemma", "list")])
    single = single.sort_by("key")
    pos = pc.index_in(single["key"], value_set=lemmas["key"])
    single = single.append_column("lemmas", lemmas["lemma_list"].take(pos))
    if single["lemmas"].null_count:
        bad = single.filter(pc.is_null(single["lemmas"]))["key"][0].as_py()
        raise ValueError(f"{where}: row key {bad} is in rows/ but has no lemma in "
                         "matches/; stage 01 outputs are inconsistent, rerun stage 01")
    # classes with any matched row (the authors' labels-dict keys, 978 on LAION-400M) and
    # classes with single-label rows (those stage 02 can keep)
    counts = {"n_matched_rows": rows.num_rows, "n_single_label": single.num_rows,
              "n_multi_label_dropped": rows.num_rows - single.num_rows,
              "n_classes_matched": len(pc.unique(pc.list_flatten(rows["wnids"]))),
              "n_classes_single_label": len(pc.unique(single["wnid"]))}
    return single, counts


# --------------------------------------------------------------------------------------------
# 2. similarity


def synset_texts(classes: pd.DataFrame, query: str = "name_def") -> pd.Series:
    """wnid -> synset text of the chosen query form (a column of ``class_table``)."""
    if query not in classes.columns:
        forms = [c for c in classes.columns if c not in ("wnid", "lemmas", "head", "definition")]
        raise ValueError(f"query {query!r} is not a class-table column; choose one of {forms}")
    return classes.set_index("wnid")[query]


# --------------------------------------------------------------------------------------------
# 1+2 part by part: what stage 02 runs (memory set by the part and chunk sizes, not the run's)


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


def class_frequency(laionet: pd.DataFrame) -> pd.DataFrame:
    """wnid, n_rows, rel_freq (share of the dataset), most frequent first (figure B3)."""
    n = laionet["wnid"].value_counts().rename_axis("wnid").reset_index(name="n_rows")
    n["rel_freq"] = n["n_rows"] / max(len(laionet), 1)
    return n


def summary(candidates: pd.DataFrame | None, laionet: pd.DataFrame, counts: dict,
            threshold: float) -> dict:
    """The numbers of stage 02 in one JSON-able dict (written as summary.json).

    ``n_classes_matched``: classes with any matched row, multi-label ones included (the paper's
    978); ``n_classes_single_label``: classes with single-label rows (the candidates' classes,
    those a threshold can keep); both from ``counts`` (``single_label_rows`` or
    ``candidate_counts``) when given there. ``candidates`` None (stage 02 streams them):
    ``counts`` holds n_candidates and n_nsfw_unlikely too (``candidate_counts``).
    """
    if candidates is not None:
        counts = {"n_classes_matched": int(candidates["wnid"].nunique()),
                  "n_classes_single_label": int(candidates["wnid"].nunique()),
                  "n_candidates": int(len(candidates)),
                  "n_nsfw_unlikely": int((candidates["NSFW"] == "UNLIKELY").sum()), **counts}
    return {**counts, "threshold": float(threshold),
            "n_laionet": int(len(laionet)), "n_classes_laionet": int(laionet["wnid"].nunique())}




def _evidence(data, nsfw_rule: str) -> tuple[int, int, int, float, str | None]:
    """(candidates, passing the NSFW rule, of those with a similarity, best similarity, its class)."""
    n = n_ok = n_sim = 0
    best, best_wnid = -np.inf, None
    for df in batches(data, ["wnid", "NSFW", "similarity"]):
        ok = df[nsfw_mask(df["NSFW"], nsfw_rule)]
        sims = ok["similarity"].astype("float64")
        n, n_ok, n_sim = n + len(df), n_ok + len(ok), n_sim + int(sims.notna().sum())
        if sims.notna().any() and sims.max() > best:
            best, best_wnid = float(sims.max()), ok.loc[sims.idxmax(), "wnid"]
    return n, n_ok, n_sim, best, best_wnid


def check_not_empty(laionet: pd.DataFrame, candidates, threshold: float,
                    nsfw_rule: str = "paper") -> None:
    """Raise ``EmptyLAIONet`` saying why and what to change when ``laionet`` has no row: no
    single-label candidate, none passing the NSFW rule, or the best similarity seen is not above
    the threshold (its value and class named)."""
    if len(laionet):
        return
    n, n_ok, n_sim, best, best_wnid = _evidence(candidates, nsfw_rule)
    if not n:
        raise EmptyLAIONet("LAIONet is empty: stage 01 left no single-label candidate (no caption "
                           "matched the lemmas of exactly one class); check laion_parts and classes")
    if not n_ok:
        raise EmptyLAIONet(f"LAIONet is empty: none of the {n} single-label "
                           f"candidates passes nsfw_rule={nsfw_rule!r}; try "
                           "`-p 02.nsfw_rule unlikely_or_unsure` (or check the NSFW column)")
    if not n_sim:
        raise EmptyLAIONet(f"LAIONet is empty: all {n_ok} candidates have no similarity")
    raise EmptyLAIONet(
        f"LAIONet is empty: threshold={threshold} keeps none of the {n_ok} single-label "
        f"candidates passing nsfw_rule={nsfw_rule!r}; the best similarity seen is "
        f"{best:.4f} (class {best_wnid}). Lower the threshold below "
        "that (`-p 02.threshold VALUE`; the paper: 0.82 for CLIP ViT-B/32, 0.58 for mpnet)")


def select_laionet(candidates, threshold: float, nsfw_rule: str = "paper",
                   op: str = ">") -> pd.DataFrame:
    """LAIONet: candidates with the NSFW rule and similarity strictly above ``threshold``; only
    LAIONet (small by design, 822k rows in the paper) is held, never all candidates.

    A table that still holds multi-label rows (``n_classes`` > 1, or no ``wnid``) loses them:
    the paper never gives such rows a similarity.
    """
    nsfw_mask(pd.Series([], dtype=object), nsfw_rule)  # a bad rule fails before any read
    above(np.zeros(0), threshold, op)

    def keep(df: pd.DataFrame) -> np.ndarray:
        k = nsfw_mask(df["NSFW"], nsfw_rule) & above(df["similarity"], threshold, op)
        k &= df["wnid"].notna().to_numpy()
        if "n_classes" in df.columns:
            k &= df["n_classes"].to_numpy() == 1
        return k

    return concat_frames(batches(candidates, filter=keep))


def threshold_curves(candidates, thresholds: Sequence[float], nsfw_rule: str = "paper",
                     op: str = ">") -> pd.DataFrame:
    """Dataset size and classes with >= 1 row vs threshold (exactly what ``select_laionet``
    would keep): rows above each threshold summed per batch (searchsorted), each class's best
    similarity kept (one number per class)."""
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if op == ">" else "left"  # ">": values equal to t fail
    n_rows = np.zeros(len(t), np.int64)
    best: dict[str, float] = {}
    for df in batches(candidates, ["wnid", "NSFW", "similarity"]):
        ok = df[nsfw_mask(df["NSFW"], nsfw_rule) & df["similarity"].notna().to_numpy()]
        sims = np.sort(ok["similarity"].to_numpy(np.float64))
        n_rows += len(sims) - np.searchsorted(sims, t, side)
        for w, m in ok.groupby("wnid")["similarity"].max().items():
            best[w] = max(best.get(w, -np.inf), float(m))
    b = np.sort(np.fromiter(best.values(), np.float64, len(best)))
    return pd.DataFrame({"threshold": t, "n_rows": n_rows,
                         "n_classes": len(b) - np.searchsorted(b, t, side)})


def similarity_histogram(candidates, nsfw_rule: str = "paper", bins: int = 60
                         ) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram of the similarity of the rows passing the NSFW rule, in two passes (range,
    then counts): (counts, edges, n rows with a similarity); the bins of ``np.histogram``."""
    lo, hi, n = np.inf, -np.inf, 0
    cols = ["NSFW", "similarity"]
    for df in batches(candidates, cols):
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"].dropna().to_numpy(np.float64)
        if len(v):
            lo, hi, n = min(lo, v.min()), max(hi, v.max()), n + len(v)
    if not n:
        return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1), 0
    edges = np.histogram_bin_edges(np.array([lo, hi]), bins)
    counts = np.zeros(bins, np.int64)
    for df in batches(candidates, cols):
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"].dropna().to_numpy(np.float64)
        counts += np.histogram(v, edges)[0]
    return counts, edges, n


def sfw_stats(candidates, nsfw_rule: str = "paper") -> dict:
    """Over the rows passing the NSFW rule: how many (n_sfw), how many have a similarity (n),
    its min and max (NaN when none); and the classes of all candidates."""
    n_sfw = n = 0
    lo, hi = np.inf, -np.inf
    classes: set[str] = set()
    for df in batches(candidates, ["wnid", "NSFW", "similarity"]):
        classes |= set(df["wnid"].dropna())
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"]
        n_sfw += len(v)
        v = v.dropna().to_numpy(np.float64)
        if len(v):
            lo, hi, n = min(lo, v.min()), max(hi, v.max()), n + len(v)
    return {"n_sfw": n_sfw, "n": n, "min": lo if n else float("nan"),
            "max": hi if n else float("nan"), "classes": sorted(classes)}


def lemma_similarities(candidates, wnid: str, class_lemmas: Sequence[str] = ()
                       ) -> tuple[pd.DataFrame, pd.Series]:
    """Long table (lemma, similarity, key) of one class (only its rows are read), a row counted
    under every lemma it matched (as the authors' per-lemma histograms); and rows per lemma,
    including the class's lemmas that matched nothing (e.g. "mountain lion": 0 after the
    multi-label drop)."""
    cols = ["key", "wnid", "lemmas", "similarity"]
    one = concat_frames(batches(candidates, cols, filter=lambda d: (d["wnid"] == wnid).to_numpy()),
                        cols)
    long = one[["key", "lemmas", "similarity"]].explode("lemmas").rename(
        columns={"lemmas": "lemma"})
    counts = long["lemma"].value_counts()
    counts = counts.reindex(list(dict.fromkeys([*class_lemmas, *counts.index])), fill_value=0)
    return long.reset_index(drop=True), counts.rename("n_rows")
