"""Stage 02's rule: which matched captions become LAIONet (paper_spec A4-A6, A8, A9).

``single_label_table`` keeps the stage-01 rows whose lemmas name exactly one class (A5);
``select_laionet``: NSFW == "UNLIKELY" exactly (A6) and similarity strictly above the threshold;
``skim_top_k``: the k most similar rows per class (Appendix B); the rest are the numbers of the
threshold figures (B1-B3). Every function that reads candidates takes a DataFrame or a table on
disk read batch by batch (``.batches(columns, filter)``, e.g. ``jobs.candidates.CandidateFiles``).
"""

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

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
    if not frames:
        return pd.DataFrame(columns=list(columns or CANDIDATE_COLUMNS))
    return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def single_label_table(rows: pa.Table, matches: pa.Table, where: str | Path = "stage 01"
                       ) -> tuple[pa.Table, dict]:
    """A5: the stage-01 ``rows`` whose captions matched lemmas of exactly one class, with that
    ``wnid`` and the matched ``lemmas`` (from ``matches``, in match-table order), sorted by key;
    and counts (rows, single-label, multi-label dropped, classes matched, classes kept)."""
    single = rows.filter(pc.equal(rows["n_classes"], 1))
    single = single.append_column("wnid", pc.list_element(single["wnids"], 0)).drop(
        ["wnids", "n_classes"]).sort_by("key")
    # lemma lists per key (match-table order kept: single-threaded group_by), aligned by key
    lemmas = matches.group_by("key", use_threads=False).aggregate([("lemma", "list")])
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


def synset_texts(classes: pd.DataFrame, query: str = "name_def") -> pd.Series:
    """A4: wnid -> synset text of the chosen query form (a column of ``class_table``)."""
    if query not in classes.columns:
        forms = [c for c in classes.columns if c not in ("wnid", "lemmas", "head", "definition")]
        raise ValueError(f"query {query!r} is not a class-table column; choose one of {forms}")
    return classes.set_index("wnid")[query]


def drop_duplicate_rows(candidates: pd.DataFrame, drop: bool = True) -> tuple[pd.DataFrame, dict]:
    """(the table, order kept; counts for summary.json): rows repeating an earlier row's URL *and*
    caption (e.g. a part mirrored twice) dropped when ``drop``, the smallest key kept; they and
    URLs shared with other captions are counted and warned about (LAION-400M has none)."""
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
    allowed = NSFW_RULES[rule]  # null is never in ``allowed``
    return np.ones(len(nsfw), bool) if allowed is None else nsfw.isin(allowed).to_numpy(bool)


def above(similarity: pd.Series | np.ndarray, threshold: float, op: str = ">") -> np.ndarray:
    """similarity > threshold (the paper's dataset creation) or ">=" (its notebooks, E.10)."""
    s = np.asarray(similarity, dtype=np.float64)
    if op not in (">", ">="):
        raise ValueError(f"op {op!r}: use '>' (paper) or '>='")
    return s > threshold if op == ">" else s >= threshold


def skim_top_k(df: pd.DataFrame, k: int = 50, min_similarity: float | None = None
               ) -> pd.DataFrame:
    """Per wnid the ``k`` rows of highest similarity (ties: smaller key first), by wnid then rank;
    rows whose OCR flag ``wnid_is_in_recognized_text`` is True or null dropped (A8 step 2). The
    authors first kept similarity > 0.58 whatever the encoder (E.17): ``min_similarity=0.58``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    keep = df["similarity"].notna().to_numpy()
    if min_similarity is not None:
        keep &= above(df["similarity"], min_similarity)
    if "wnid_is_in_recognized_text" in df.columns:
        keep &= df["wnid_is_in_recognized_text"].eq(False).to_numpy()
    d = df[keep]
    d = d.iloc[np.lexsort((d["key"].to_numpy(), -d["similarity"].to_numpy(np.float64),
                           d["wnid"].to_numpy(str)))]
    rank = d.groupby("wnid", sort=False).cumcount().to_numpy()
    return d[rank < k].reset_index(drop=True)


def class_frequency(laionet: pd.DataFrame) -> pd.DataFrame:
    """wnid, n_rows, rel_freq (share of the dataset), most frequent first (figure B3)."""
    n = laionet["wnid"].value_counts().rename_axis("wnid").reset_index(name="n_rows")
    n["rel_freq"] = n["n_rows"] / max(len(laionet), 1)
    return n


def summary(laionet: pd.DataFrame, counts: dict, threshold: float) -> dict:
    """summary.json: ``counts`` (``candidate_counts``), the threshold, LAIONet's rows, classes."""
    return {**counts, "threshold": float(threshold),
            "n_laionet": len(laionet), "n_classes_laionet": int(laionet["wnid"].nunique())}


def check_not_empty(laionet: pd.DataFrame, candidates, threshold: float,
                    nsfw_rule: str = "paper") -> None:
    """Raise ``EmptyLAIONet`` saying why (no single-label candidate, none passing the NSFW rule,
    or the best similarity is not above the threshold) and what to change, when it is empty."""
    if len(laionet):
        return
    st = sfw_stats(candidates, nsfw_rule)
    if not st["n_rows"]:
        raise EmptyLAIONet("LAIONet is empty: stage 01 left no single-label candidate (no caption "
                           "matched the lemmas of exactly one class); check laion_parts and classes")
    if not st["n_sfw"]:
        raise EmptyLAIONet(f"LAIONet is empty: none of the {st['n_rows']} single-label "
                           f"candidates passes nsfw_rule={nsfw_rule!r}; try "
                           "`-p 02.nsfw_rule unlikely_or_unsure` (or check the NSFW column)")
    if not st["n"]:
        raise EmptyLAIONet(f"LAIONet is empty: all {st['n_sfw']} candidates have no similarity")
    raise EmptyLAIONet(
        f"LAIONet is empty: threshold={threshold} keeps none of the {st['n_sfw']} single-label "
        f"candidates passing nsfw_rule={nsfw_rule!r}; the best similarity seen is "
        f"{st['max']:.4f} (class {st['max_wnid']}). Lower the threshold below "
        "that (`-p 02.threshold VALUE`; the paper: 0.82 for CLIP ViT-B/32, 0.58 for mpnet)")


def select_laionet(candidates, threshold: float, nsfw_rule: str = "paper",
                   op: str = ">") -> pd.DataFrame:
    """LAIONet: candidates passing the NSFW rule with similarity strictly above ``threshold``
    (only LAIONet is held); multi-label rows (``n_classes`` > 1, or no ``wnid``) never pass."""
    nsfw_mask(pd.Series([], dtype=object), nsfw_rule)  # a bad rule fails before any read
    above(np.zeros(0), threshold, op)

    def keep(df: pd.DataFrame) -> np.ndarray:
        k = nsfw_mask(df["NSFW"], nsfw_rule) & above(df["similarity"], threshold, op)
        k &= df["wnid"].notna().to_numpy()
        if "n_classes" in df.columns:
            k &= df["n_classes"].to_numpy() == 1
        return k

    return concat_frames(batches(candidates, filter=keep))


def _sfw(candidates, nsfw_rule: str, columns=("wnid", "NSFW", "similarity")):
    """Per batch: (the batch, its rows passing the NSFW rule with a similarity, as float64)."""
    for df in batches(candidates, list(columns)):
        ok = df[nsfw_mask(df["NSFW"], nsfw_rule) & df["similarity"].notna().to_numpy()]
        yield df, ok, ok["similarity"].to_numpy(np.float64)


def threshold_curves(candidates, thresholds: Sequence[float], nsfw_rule: str = "paper",
                     op: str = ">") -> pd.DataFrame:
    """Dataset size and classes with >= 1 row vs threshold, exactly as ``select_laionet`` keeps
    them (per batch: rows above each threshold, each class's best similarity)."""
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if op == ">" else "left"  # ">": values equal to t fail
    n_rows = np.zeros(len(t), np.int64)
    best: dict[str, float] = {}
    for _, ok, sims in _sfw(candidates, nsfw_rule):
        n_rows += len(sims) - np.searchsorted(np.sort(sims), t, side)
        for w, m in ok.groupby("wnid")["similarity"].max().items():
            best[w] = max(best.get(w, -np.inf), float(m))
    b = np.sort(np.fromiter(best.values(), np.float64, len(best)))
    return pd.DataFrame({"threshold": t, "n_rows": n_rows,
                         "n_classes": len(b) - np.searchsorted(b, t, side)})


def sfw_stats(candidates, nsfw_rule: str = "paper") -> dict:
    """Candidates (n_rows), those passing the NSFW rule (n_sfw), those of them with a similarity
    (n), its min and max (NaN when none) and the class of the max; all candidates' classes."""
    n_rows = n_sfw = n = 0
    lo, hi, hi_wnid = np.inf, -np.inf, None
    classes: set[str] = set()
    for df, ok, v in _sfw(candidates, nsfw_rule):
        classes |= set(df["wnid"].dropna())
        n_rows, n_sfw = n_rows + len(df), n_sfw + int(nsfw_mask(df["NSFW"], nsfw_rule).sum())
        if len(v):
            if v.max() > hi:
                hi_wnid = ok["wnid"].iloc[int(np.argmax(v))]
            lo, hi, n = min(lo, v.min()), max(hi, v.max()), n + len(v)
    return {"n_rows": n_rows, "n_sfw": n_sfw, "n": n, "min": lo if n else float("nan"),
            "max": hi if n else float("nan"), "max_wnid": hi_wnid, "classes": sorted(classes)}


def similarity_histogram(candidates, nsfw_rule: str = "paper", bins: int = 60,
                         stats: dict | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(counts, edges, n) of the similarity of the rows passing the NSFW rule, ``np.histogram``'s
    bins over its range (``stats``: ``sfw_stats``, if already computed)."""
    stats = stats or sfw_stats(candidates, nsfw_rule)
    if not stats["n"]:
        return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1), 0
    edges = np.histogram_bin_edges(np.array([stats["min"], stats["max"]]), bins)
    counts = np.zeros(bins, np.int64)
    for _, _, v in _sfw(candidates, nsfw_rule, ["NSFW", "similarity"]):
        counts += np.histogram(v, edges)[0]
    return counts, edges, stats["n"]


def lemma_similarities(candidates, wnid: str, class_lemmas: Sequence[str] = ()
                       ) -> tuple[pd.DataFrame, pd.Series]:
    """B2: one class's rows as (key, lemma, similarity), under every lemma each matched; and rows
    per lemma, unmatched lemmas at 0 (e.g. "mountain lion" after the multi-label drop)."""
    cols = ["key", "wnid", "lemmas", "similarity"]
    one = concat_frames(batches(candidates, cols, filter=lambda d: (d["wnid"] == wnid).to_numpy()),
                        cols)
    long = one[["key", "lemmas", "similarity"]].explode("lemmas").rename(
        columns={"lemmas": "lemma"})
    counts = long["lemma"].value_counts()
    counts = counts.reindex(list(dict.fromkeys([*class_lemmas, *counts.index])), fill_value=0)
    return long.reset_index(drop=True), counts.rename("n_rows")
