"""Stage 01's task: match the captions of LAION parts against ImageNet lemmas, part by part.

``match_all`` maps ``match_part`` over the parts with the generic part mapper
(``laionet.jobs.parts.map_parts``: any executor, resume, collected failures). ``match_part`` streams
only the TEXT column in batches (memory bounded by the batch size), matches lemmas
(``laionet.method.matching``) and writes, atomically, ``matches/part-%05d.parquet`` (part, row, key,
lemma, wnid) and ``rows/part-%05d.parquet`` (part, row, key, wnids, n_classes, multi_label); keys
are ``laionet.sources.laion.row_key``. ``summarize_matches`` turns them into per-class and per-lemma counts
and a summary with every unreachable class and why.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from laionet.jobs.parts import MapResult, PartError, done_stats, map_parts, part_file
from laionet.sources.laion import part_number, row_key
from laionet.util.files import parquet_writer, write_json, write_parquet
from laionet.util.fingerprint import fingerprint
from laionet.method.matching import LemmaIndex, match_batch

TEXT = "TEXT"
MATCHES_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                            ("lemma", pa.string()), ("wnid", pa.string())])
ROWS_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                         ("wnids", pa.list_(pa.string())), ("n_classes", pa.int16()),
                         ("multi_label", pa.bool_())])
# why a class has no match, in the order the coverage figure lists them
STATUSES = ("matched", "never matched", "all lemmas have punctuation (paper mode)",
            "all lemmas empty after normalization", "no unique lemma")


def match_all(parts: Sequence[str | os.PathLike], lemma_pairs: Sequence[tuple[str, str]],
              out_dir: str | os.PathLike, mode: str = "paper", batch_size: int = 65536,
              n_workers: int = 2, executor=None, on_error: str = "raise") -> MapResult:
    """Match every part not matched yet (its ``done/`` marker holds these lemmas and mode).

    The marker fingerprint is the lemma list and the mode (what a part's output depends on), so a
    killed run resumes and a changed class list or mode redoes every part.
    """
    task = functools.partial(match_part, lemma_pairs=[tuple(p) for p in lemma_pairs], mode=mode,
                             out_dir=str(out_dir), batch_size=batch_size)
    key = fingerprint({"lemma_pairs": [list(p) for p in lemma_pairs], "mode": mode})
    return map_parts(task, parts, out_dir, executor=executor, desc="matching parts",
                     n_workers=n_workers, fingerprint=key, on_error=on_error)


def _open_text_column(path: Path) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise PartError(f"{path}: not a readable parquet file ({type(exc).__name__}: "
                        f"{str(exc).strip()}); re-copy or remove the part") from exc
    schema = pf.schema_arrow
    if schema.get_field_index(TEXT) < 0:
        raise PartError(f"{path}: no {TEXT} column (columns: {schema.names}); a LAION part holds "
                        f"its captions in {TEXT}")
    t = schema.field(TEXT).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_null(t)):
        raise PartError(f"{path}: column {TEXT} has type {t}, expected string captions")
    return pf


def match_part(part_path: str | os.PathLike, lemma_pairs: Sequence[tuple[str, str]],
               mode: str = "paper", out_dir: str | os.PathLike = ".", batch_size: int = 65536,
               part: int | None = None) -> dict[str, Any]:
    """Match one part's captions; write matches/ and rows/ tables; return counts.

    part: the part number (``map_parts`` passes it); None = ``laionet.sources.laion.part_number``.
    Only the TEXT column is read, ``batch_size`` rows at a time. Returns n_rows, n_null (null
    captions, which never match), n_matched_rows, n_matches, n_multi_label, seconds.
    """

    t0 = time.perf_counter()
    path = Path(part_path)
    if part is None:
        part = part_number(path)
    index = _lemma_index(tuple(map(tuple, lemma_pairs)))
    wnid_of_lemma = np.array([w for _, w in lemma_pairs], dtype=object)
    pf = _open_text_column(path)
    base = n_null = n_matches = n_matched = n_multi = 0
    # Both tables are streamed batch by batch into temp files beside their destinations (memory:
    # one batch); batches split the part by row, so the rows table of each batch is exactly its
    # share of the part's. The files are renamed into place only when the whole part is done.
    with parquet_writer(part_file(out_dir, "matches", part), MATCHES_SCHEMA) as mw, \
            parquet_writer(part_file(out_dir, "rows", part), ROWS_SCHEMA) as rw:
        try:
            for batch in pf.iter_batches(batch_size=batch_size, columns=[TEXT]):
                text = batch.column(0)
                r, lid = match_batch(text, index, mode)
                r = r + base
                base += batch.num_rows
                n_null += text.null_count
                if not len(r):
                    continue
                matches = _matches_table(part, r, lid, index.lemmas, wnid_of_lemma)
                row_table = _rows_table(part, r, wnid_of_lemma[lid])
                mw.write_table(matches)
                rw.write_table(row_table)
                n_matches += matches.num_rows
                n_matched += row_table.num_rows
                n_multi += int(pc.sum(row_table["multi_label"]).as_py() or 0)
        except PartError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise PartError(f"{path}: reading {TEXT} failed after {base} rows "
                            f"({type(exc).__name__}: {str(exc).strip()}); re-copy or remove "
                            "the part") from exc
    return {"n_rows": base, "n_null": n_null, "n_matched_rows": n_matched,
            "n_matches": n_matches, "n_multi_label": n_multi,
            "seconds": round(time.perf_counter() - t0, 3)}


@functools.lru_cache(maxsize=4)
def _lemma_index(pairs: tuple[tuple[str, str], ...]):
    """One compiled index per worker process and lemma list (reused across its parts)."""

    return LemmaIndex([lem for lem, _ in pairs])


def _matches_table(part, row, lid, lemmas, wnid_of_lemma) -> pa.Table:
    lemma_arr = np.array(lemmas, dtype=object)
    return pa.table({
        "part": pa.array(np.full(len(row), part, dtype=np.int32)),
        "row": pa.array(row, pa.int64()),
        "key": pa.array(row_key(part, row), pa.int64()),
        "lemma": pa.array(lemma_arr[lid] if len(lid) else [], pa.string()),
        "wnid": pa.array(wnid_of_lemma[lid] if len(lid) else [], pa.string()),
    }, schema=MATCHES_SCHEMA)


def _rows_table(part: int, row: np.ndarray, wnid: np.ndarray) -> pa.Table:
    """One row per matched caption: its sorted unique wnids, their count, multi-label flag."""
    if len(row) == 0:
        return ROWS_SCHEMA.empty_table()
    names, code = np.unique(wnid.astype(str), return_inverse=True)  # code order = string order
    pair = np.unique(row * len(names) + code)  # dedupe (row, wnid), sorted by row then wnid
    prow, pcode = pair // len(names), pair % len(names)
    urow, first, counts = np.unique(prow, return_index=True, return_counts=True)
    offsets = np.append(first, len(prow)).astype(np.int32)
    wnids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(names[pcode], pa.string()))
    return pa.table({
        "part": pa.array(np.full(len(urow), part, dtype=np.int32)),
        "row": pa.array(urow, pa.int64()),
        "key": pa.array(row_key(part, urow), pa.int64()),
        "wnids": wnids,
        "n_classes": pa.array(counts.astype(np.int16)),
        "multi_label": pa.array(counts > 1),
    }, schema=ROWS_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------

def _part_files(out_dir: Path, kind: str) -> list[Path]:
    return sorted((out_dir / kind).glob("part-*.parquet"))


def _per_part_counts(matches_file: Path, rows_file: Path) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                    pd.Series]:
    """One part's per-lemma and per-class counts and its classes-per-caption histogram.

    Keys never repeat across parts, so summing these over parts gives the exact counts of all
    parts at once (memory: one part's matches, never all of them)."""
    matches = pq.read_table(matches_file, columns=["key", "lemma", "wnid"]).to_pandas()
    rows = pq.read_table(rows_file, columns=["key", "n_classes"]).to_pandas()
    single = matches["key"].isin(rows.loc[rows["n_classes"] == 1, "key"])
    m = matches.assign(single=single)
    lemma = (m.groupby(["lemma", "wnid"]).agg(n_rows=("key", "nunique"),
                                              n_single_label=("single", "sum")))
    per_class = (m.drop_duplicates(["key", "wnid"]).groupby("wnid")
                 .agg(n_rows=("key", "size"), n_single_label=("single", "sum")))
    return lemma, per_class, rows["n_classes"].value_counts()


def _summed(frames: list[pd.DataFrame | pd.Series]):
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    return pd.concat(frames).groupby(level=list(range(frames[0].index.nlevels))).sum()


def summarize_matches(out_dir: str | os.PathLike, table: pd.DataFrame,
                      lemma_pairs: Sequence[tuple[str, str]], mode: str = "paper",
                      write: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Per-class and per-lemma counts over all finished parts, and a summary.

    class_counts: wnid, head, n_rows (captions matching the class), n_single_label (captions
        matching only this class), n_lemmas, status ("matched" or why not: "no unique lemma",
        "all lemmas have punctuation (paper mode)", "never matched").
    lemma_counts: lemma, wnid, n_rows, n_single_label.
    summary: parts, rows, null captions, matched rows, multi-label share, matched classes and the
        unreachable classes by reason. Written as class_counts.parquet, lemma_counts.parquet and
        summary.json in ``out_dir`` when ``write``.
    """

    out = Path(out_dir)
    lemma_parts, class_parts, hist_parts, n_match_rows = [], [], [], 0
    for mf in _part_files(out, "matches"):  # one part in memory at a time
        lemma, per_cls, hist = _per_part_counts(mf, out / "rows" / mf.name)
        lemma_parts.append(lemma)
        class_parts.append(per_cls)
        hist_parts.append(hist)
        n_match_rows += pq.ParquetFile(mf).metadata.num_rows
    lemma_sum = _summed(lemma_parts)
    per_class = _summed(class_parts)
    if per_class is None:
        per_class = pd.DataFrame({"n_rows": [], "n_single_label": []}, dtype="int64")
    hist = _summed(hist_parts)
    lemma_counts = pd.DataFrame(lemma_pairs, columns=["lemma", "wnid"])
    if lemma_sum is not None:
        lemma_counts = lemma_counts.merge(lemma_sum.reset_index(), on=["lemma", "wnid"],
                                          how="left")
    else:
        lemma_counts = lemma_counts.assign(n_rows=0, n_single_label=0)
    lemma_counts = (lemma_counts.fillna({"n_rows": 0, "n_single_label": 0})
                    .astype({"n_rows": "int64", "n_single_label": "int64"}))
    unmatchable = set(LemmaIndex([lem for lem, _ in lemma_pairs]).unmatchable(mode))
    lemmas_of: dict[str, list[str]] = {}
    for lem, w in lemma_pairs:
        lemmas_of.setdefault(w, []).append(lem)
    cc = table[["wnid", "head"]].copy()
    cc["n_rows"] = cc["wnid"].map(per_class["n_rows"]).fillna(0).astype("int64")
    cc["n_single_label"] = cc["wnid"].map(per_class["n_single_label"]).fillna(0).astype("int64")
    cc["n_lemmas"] = cc["wnid"].map(lambda w: len(lemmas_of.get(w, []))).astype("int64")

    def status(w: str, n: int) -> str:
        if n > 0:
            return "matched"
        if not lemmas_of.get(w):
            return "no unique lemma"
        if all(lem in unmatchable for lem in lemmas_of[w]):
            return f"all lemmas have punctuation ({mode} mode)" if mode == "paper" else \
                "all lemmas empty after normalization"
        return "never matched"

    cc["status"] = [status(w, n) for w, n in zip(cc["wnid"], cc["n_rows"])]
    stats = done_stats(out)
    n_rows = int(sum(s.get("n_rows", 0) for s in stats))
    n_matched = int(hist.sum()) if hist is not None else 0
    n_multi = int(hist[hist.index > 1].sum()) if hist is not None else 0
    summary = {
        "mode": mode, "n_parts": len(stats), "n_rows": n_rows,
        "n_null_captions": int(sum(s.get("n_null", 0) for s in stats)),
        "n_matched_rows": n_matched, "n_matches": n_match_rows, "n_multi_label_rows": n_multi,
        "multi_label_share": n_multi / n_matched if n_matched else 0.0,
        "n_classes": len(cc), "n_classes_with_lemmas": int((cc["n_lemmas"] > 0).sum()),
        "n_matched_classes": int((cc["n_rows"] > 0).sum()),
        "n_classes_with_single_label_rows": int((cc["n_single_label"] > 0).sum()),
        "unreachable": {reason: sorted(g["wnid"]) for reason, g in cc[cc["status"] != "matched"]
                        .groupby("status")},
        "n_lemmas": len(lemma_pairs), "n_unmatchable_lemmas": len(unmatchable),
        "n_lemmas_matched": int((lemma_counts["n_rows"] > 0).sum()),
    }
    if write:
        write_parquet(cc, out / "class_counts.parquet")
        write_parquet(lemma_counts, out / "lemma_counts.parquet")
        write_json(summary, out / "summary.json")
    return cc, lemma_counts, summary


def classes_per_caption(out_dir: str | os.PathLike) -> pd.Series:
    """How many matching captions name 1, 2, ... classes (index: n_classes), over all parts
    (read part by part: one column of one part in memory at a time)."""
    counts: dict[int, int] = {}
    for f in _part_files(Path(out_dir), "rows"):
        n = pq.read_table(f, columns=["n_classes"]).column(0).to_numpy()
        values, c = np.unique(n, return_counts=True)
        for v, k in zip(values.tolist(), c.tolist()):
            counts[v] = counts.get(v, 0) + k
    idx = sorted(counts)
    return pd.Series([counts[i] for i in idx], index=pd.Index(idx, dtype="int16", name="n_classes"),
                     dtype="int64", name="count")


def unreachable_classes(class_counts: pd.DataFrame) -> pd.DataFrame:
    """The classes no caption matched and why (wnid, head, status, n_lemmas), by status then wnid."""
    out = class_counts[class_counts["status"] != "matched"][["wnid", "head", "status", "n_lemmas"]]
    return out.sort_values(["status", "wnid"])
