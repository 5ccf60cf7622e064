"""Stage 01's task: match the captions of LAION parts against ImageNet lemmas (A3), part by part.

``match_all`` maps ``match_part`` over the parts (``laionet.jobs.parts.map_parts``): the TEXT
column streamed in batches, lemmas matched (``laionet.method.matching``), ``matches/`` and
``rows/`` written per part. ``summarize_matches`` counts per class and lemma, with every
unreachable class and why.
"""

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
from laionet.method.matching import LemmaIndex, match_batch
from laionet.sources.laion import part_files, part_number, row_key
from laionet.util.files import parquet_writer, write_json, write_parquet
from laionet.util.fingerprint import fingerprint

TEXT = "TEXT"
MATCHES_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                            ("lemma", pa.string()), ("wnid", pa.string())])
ROWS_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                         ("wnids", pa.list_(pa.string())), ("n_classes", pa.int16()),
                         ("multi_label", pa.bool_())])
# why a class has no match, in the order the coverage figure lists them
STATUSES = ("matched", "never matched", "all lemmas have punctuation (paper mode)",
            "all lemmas empty after normalization", "no unique lemma")


def match_all(parts: str | Sequence[str | os.PathLike], lemma_pairs: Sequence[tuple[str, str]],
              out_dir: str | os.PathLike, mode: str = "paper", batch_size: int = 65536,
              n_workers: int = 2, executor=None, on_error: str = "raise") -> MapResult:
    """Match every part (a glob or a list of files) not matched yet: its ``done/`` marker holds
    the lemma list and mode, so a killed run resumes and another class list or mode redoes it."""
    if isinstance(parts, str):
        parts = list(part_files(parts).values())
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
    """Match one part's captions (``batch_size`` rows at a time), write its matches/ and rows/
    tables; return its counts (null captions never match). ``part``: None = from the file name."""
    t0 = time.perf_counter()
    path = Path(part_path)
    if part is None:
        part = part_number(path)
    index = _lemma_index(tuple(map(tuple, lemma_pairs)))
    wnid_of_lemma = np.array([w for _, w in lemma_pairs], dtype=object)
    pf = _open_text_column(path)
    base = n_null = n_matches = n_matched = n_multi = 0
    # both tables streamed batch by batch, renamed into place when the whole part is done
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


def _keyed(part: int, row: np.ndarray) -> dict[str, pa.Array]:
    return {"part": pa.array(np.full(len(row), part, dtype=np.int32)),
            "row": pa.array(row, pa.int64()), "key": pa.array(row_key(part, row), pa.int64())}


def _matches_table(part, row, lid, lemmas, wnid_of_lemma) -> pa.Table:
    return pa.table({**_keyed(part, row),
                     "lemma": pa.array(np.array(lemmas, dtype=object)[lid], pa.string()),
                     "wnid": pa.array(wnid_of_lemma[lid], pa.string())}, schema=MATCHES_SCHEMA)


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
    return pa.table({**_keyed(part, urow), "wnids": wnids,
                     "n_classes": pa.array(counts.astype(np.int16)),
                     "multi_label": pa.array(counts > 1)}, schema=ROWS_SCHEMA)


def _part_files(out_dir: Path, kind: str) -> list[Path]:
    return sorted((out_dir / kind).glob("part-*.parquet"))


def _per_part_counts(matches_file: Path, rows_file: Path
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """One part's per-lemma and per-class counts and its classes-per-caption histogram (keys
    never repeat across parts: their sums over parts are the exact counts, one part in memory)."""
    matches = pq.read_table(matches_file, columns=["key", "lemma", "wnid"]).to_pandas()
    rows = pq.read_table(rows_file, columns=["key", "n_classes"]).to_pandas()
    single = matches["key"].isin(rows.loc[rows["n_classes"] == 1, "key"])
    m = matches.assign(single=single)
    lemma = (m.groupby(["lemma", "wnid"]).agg(n_rows=("key", "nunique"),
                                              n_single_label=("single", "sum")))
    per_class = (m.drop_duplicates(["key", "wnid"]).groupby("wnid")
                 .agg(n_rows=("key", "size"), n_single_label=("single", "sum")))
    return lemma, per_class, rows["n_classes"].value_counts()


def _summed(frames: list) -> pd.DataFrame | pd.Series | None:
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    return pd.concat(frames).groupby(level=list(range(frames[0].index.nlevels))).sum()


def summarize_matches(out_dir: str | os.PathLike, table: pd.DataFrame,
                      lemma_pairs: Sequence[tuple[str, str]], mode: str = "paper",
                      write: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Over all finished parts: class_counts (n_rows: captions matching the class,
    n_single_label: matching only it, n_lemmas, status: "matched" or why not, ``STATUSES``),
    lemma_counts and a summary (rows, null captions, multi-label share, unreachable classes)."""
    out = Path(out_dir)
    files = _part_files(out, "matches")
    counts = [_per_part_counts(f, out / "rows" / f.name) for f in files]  # one part at a time
    lemma_sum = _summed([c[0] for c in counts])
    per_class = _summed([c[1] for c in counts])
    hist = _histogram([c[2] for c in counts])
    lemma_counts = pd.DataFrame(lemma_pairs, columns=["lemma", "wnid"])
    if lemma_sum is not None:
        lemma_counts = lemma_counts.merge(lemma_sum.reset_index(), on=["lemma", "wnid"], how="left")
    lemma_counts = (lemma_counts.reindex(columns=["lemma", "wnid", "n_rows", "n_single_label"])
                    .fillna(0).astype({"n_rows": "int64", "n_single_label": "int64"}))
    unmatchable = set(LemmaIndex([lem for lem, _ in lemma_pairs]).unmatchable(mode))
    lemmas_of: dict[str, list[str]] = {}
    for lem, w in lemma_pairs:
        lemmas_of.setdefault(w, []).append(lem)
    cc = table[["wnid", "head"]].copy()
    for col in ("n_rows", "n_single_label"):
        cc[col] = cc["wnid"].map({} if per_class is None else per_class[col]).fillna(0).astype(int)
    cc["n_lemmas"] = cc["wnid"].map(lambda w: len(lemmas_of.get(w, []))).astype("int64")

    def status(w: str, n: int) -> str:
        if n > 0 or not lemmas_of.get(w):
            return "matched" if n > 0 else "no unique lemma"
        if all(lem in unmatchable for lem in lemmas_of[w]):
            return STATUSES[2] if mode == "paper" else STATUSES[3]
        return "never matched"

    cc["status"] = [status(w, n) for w, n in zip(cc["wnid"], cc["n_rows"])]
    stats = done_stats(out)
    n_rows = int(sum(s.get("n_rows", 0) for s in stats))
    n_matched, n_multi = int(hist.sum()), int(hist[hist.index > 1].sum())
    summary = {
        "mode": mode, "n_parts": len(stats), "n_rows": n_rows,
        "n_null_captions": int(sum(s.get("n_null", 0) for s in stats)),
        "n_matched_rows": n_matched, "n_multi_label_rows": n_multi,
        "n_matches": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
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
    """How many matching captions name 1, 2, ... classes (index: n_classes)."""
    return _histogram([pq.read_table(f, columns=["n_classes"]).to_pandas()["n_classes"]
                       .value_counts() for f in _part_files(Path(out_dir), "rows")])


def _histogram(per_part: list[pd.Series]) -> pd.Series:
    counts = _summed(per_part)
    if counts is None:
        return pd.Series([], pd.Index([], dtype="int16", name="n_classes"), "int64", "count")
    return counts.astype("int64")


def unreachable_classes(class_counts: pd.DataFrame) -> pd.DataFrame:
    """The classes no caption matched and why (wnid, head, status, n_lemmas), by status then wnid."""
    out = class_counts[class_counts["status"] != "matched"][["wnid", "head", "status", "n_lemmas"]]
    return out.sort_values(["status", "wnid"])
