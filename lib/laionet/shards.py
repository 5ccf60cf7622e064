"""Per-part processing of LAION-style parquet parts (stage 01 and any other per-part stage).

``map_parts`` runs one task per part through any ``concurrent.futures.Executor`` (a local process
pool by default; ``distributed.Client(...).get_executor()`` for a Dask cluster, unchanged), with a
progress bar, resume and collected failures. A part counts as done when its marker
``done/part-%05d.json`` exists with the same fingerprint (parameters + input file size/mtime);
the marker is written atomically after the task's own outputs, so a crash never leaves a part
that looks finished but is not.

``match_part`` is stage 01's task: it streams only the TEXT column in batches (memory bounded by
the batch size), matches lemmas (``laionet.matching``) and writes, atomically,
``matches/part-%05d.parquet`` (part, row, key, lemma, wnid) and ``rows/part-%05d.parquet``
(part, row, key, wnids, n_classes, multi_label). ``summarize_matches`` turns them into per-class
and per-lemma counts and a summary with every unreachable class and why.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import read_json, write_json, write_parquet
from .stage import file_fingerprint
from .stage import fingerprint as params_fingerprint

KEY_STRIDE = 100_000_000  # the authors' global index: part * 100_000_000 + row
TEXT = "TEXT"
_PART_RE = re.compile(r"part-(\d+)")

MATCHES_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                            ("lemma", pa.string()), ("wnid", pa.string())])
ROWS_SCHEMA = pa.schema([("part", pa.int32()), ("row", pa.int64()), ("key", pa.int64()),
                         ("wnids", pa.list_(pa.string())), ("n_classes", pa.int16()),
                         ("multi_label", pa.bool_())])


class PartError(RuntimeError):
    """A part that cannot be processed (unreadable, wrong schema); the message names the file."""


# ---------------------------------------------------------------------------------------------
# Part numbering and markers
# ---------------------------------------------------------------------------------------------

def part_numbers(parts: Sequence[str | os.PathLike]) -> dict[Path, int]:
    """Part number of each file: the number in ``part-%05d-...``; else its position in the sorted
    list. Raises when two files get the same number (their outputs would collide)."""
    paths = sorted(Path(p) for p in parts)
    nums = {}
    for pos, p in enumerate(paths):
        m = _PART_RE.search(p.name)
        nums[p] = int(m.group(1)) if m else pos
    seen: dict[int, Path] = {}
    for p, n in nums.items():
        if n in seen:
            raise ValueError(f"parts {seen[n]} and {p} both have part number {n}; "
                             "rename them part-%05d-... with distinct numbers")
        seen[n] = p
    return nums


def part_file(out_dir: str | os.PathLike, kind: str, part: int, ext: str = "parquet") -> Path:
    return Path(out_dir) / kind / f"part-{part:05d}.{ext}"


def _marker_fingerprint(path: Path, fingerprint: str) -> str:
    return params_fingerprint([fingerprint, file_fingerprint(path)])


def is_done(out_dir: str | os.PathLike, part: int, path: Path, fingerprint: str = "") -> bool:
    marker = part_file(out_dir, "done", part, "json")
    if not marker.is_file():
        return False
    try:
        return read_json(marker).get("fingerprint") == _marker_fingerprint(path, fingerprint)
    except (OSError, ValueError):
        return False


@dataclass
class MapResult:
    """What ``map_parts`` did: stats per finished part, skipped (resumed) parts, failures."""

    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # part path -> error message

    def raise_for_failures(self) -> None:
        if self.failed:
            lines = "\n".join(f"  {p}: {msg.strip().splitlines()[-1]}"
                              for p, msg in self.failed.items())
            raise PartError(f"{len(self.failed)} part(s) failed (finished parts are kept; rerun "
                            f"to resume):\n{lines}")


def _call(fn: Callable[..., dict], path: Path, part: int) -> dict:
    """Run one task; errors come back as text with the part's path (picklable everywhere)."""
    try:
        return {"ok": True, "stats": fn(path, part=part)}
    except Exception as exc:  # noqa: BLE001 - reported with the path, never swallowed
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}


def map_parts(fn: Callable[..., dict], parts: Sequence[str | os.PathLike],
              out_dir: str | os.PathLike, executor: cf.Executor | None = None,
              desc: str = "parts", n_workers: int = 2, fingerprint: str = "",
              on_error: str = "raise") -> MapResult:
    """Run ``fn(path, part=n) -> stats dict`` once per part that is not done yet.

    executor: any concurrent.futures.Executor (kept open; the caller owns it). None: a process
        pool of ``n_workers`` (forkserver: no fork of a process running Arrow threads), or inline when
        n_workers <= 1.
    fingerprint: identifies the parameters; a part is skipped only when its marker holds the same
        fingerprint and the input file has the same size and mtime.
    on_error: "raise" (after every other part finished) or "skip" (failures only reported in the
        result).
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be raise or skip, not {on_error!r}")
    nums = part_numbers(parts)
    result = MapResult()
    todo = []
    for path, part in nums.items():
        if is_done(out_dir, part, path, fingerprint):
            result.skipped.append(part)
        else:
            todo.append((path, part))
    own = executor is None and n_workers > 1 and len(todo) > 1
    if own:
        executor = cf.ProcessPoolExecutor(min(n_workers, len(todo)),
                                          mp_context=multiprocessing.get_context("forkserver"))
    bar = tqdm(total=len(nums), initial=len(result.skipped), desc=desc, unit="part")
    try:
        if executor is None:
            outcomes = ((path, part, _call(fn, path, part)) for path, part in todo)
        else:
            futures = {executor.submit(_call, fn, path, part): (path, part) for path, part in todo}
            outcomes = ((*futures[f], _future_result(f)) for f in cf.as_completed(futures))
        for path, part, out in outcomes:
            if out["ok"]:
                stats = dict(out["stats"] or {}, part=part, path=str(path))
                write_json({"fingerprint": _marker_fingerprint(path, fingerprint), "stats": stats},
                           part_file(out_dir, "done", part, "json"))
                result.done[part] = stats
            else:
                result.failed[str(path)] = out["error"]
            bar.update(1)
    finally:
        bar.close()
        if own:
            executor.shutdown()
    if on_error == "raise":
        result.raise_for_failures()
    return result


def _future_result(f: cf.Future) -> dict:
    try:
        return f.result()
    except Exception as exc:  # noqa: BLE001 - a worker that died, a pickling error ...
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def done_stats(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The stats of every finished part (from the markers), sorted by part."""
    files = sorted((Path(out_dir) / "done").glob("part-*.json"))
    return [read_json(f)["stats"] for f in files]


# ---------------------------------------------------------------------------------------------
# Stage 01's task
# ---------------------------------------------------------------------------------------------

def _open_text_column(path: Path) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise PartError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc}); "
                        "re-copy or remove the part") from exc
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

    part: the part number (``map_parts`` passes it); None = from the file name ``part-%05d-...``.
    Only the TEXT column is read, ``batch_size`` rows at a time. Returns n_rows, n_null (null
    captions, which never match), n_matched_rows, n_matches, n_multi_label, seconds.
    """
    from .matching import match_batch

    t0 = time.perf_counter()
    path = Path(part_path)
    if part is None:
        m = _PART_RE.search(path.name)
        if not m:
            raise PartError(f"{path}: no part number in the file name (part-%05d-...); pass part=")
        part = int(m.group(1))
    index = _lemma_index(tuple(map(tuple, lemma_pairs)))
    wnid_of_lemma = np.array([w for _, w in lemma_pairs], dtype=object)
    pf = _open_text_column(path)
    rows, lids, base, n_null = [], [], 0, 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=[TEXT]):
            text = batch.column(0)
            r, lid = match_batch(text, index, mode)
            rows.append(r + base)
            lids.append(lid)
            base += batch.num_rows
            n_null += text.null_count
    except PartError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise PartError(f"{path}: reading {TEXT} failed after {base} rows "
                        f"({type(exc).__name__}: {exc})") from exc
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    lid = np.concatenate(lids) if lids else np.zeros(0, np.int32)
    matches = _matches_table(part, row, lid, index.lemmas, wnid_of_lemma)
    row_table = _rows_table(part, row, wnid_of_lemma[lid] if len(lid) else np.zeros(0, object))
    write_parquet(matches, part_file(out_dir, "matches", part))
    write_parquet(row_table, part_file(out_dir, "rows", part))
    return {"n_rows": base, "n_null": n_null, "n_matched_rows": row_table.num_rows,
            "n_matches": matches.num_rows,
            "n_multi_label": int(pc.sum(row_table["multi_label"]).as_py() or 0),
            "seconds": round(time.perf_counter() - t0, 3)}


@functools.lru_cache(maxsize=4)
def _lemma_index(pairs: tuple[tuple[str, str], ...]):
    """One compiled index per worker process and lemma list (reused across its parts)."""
    from .matching import LemmaIndex

    return LemmaIndex([lem for lem, _ in pairs])


def _keys(part: int, row: np.ndarray) -> np.ndarray:
    return np.int64(part) * KEY_STRIDE + row.astype(np.int64)


def _matches_table(part, row, lid, lemmas, wnid_of_lemma) -> pa.Table:
    lemma_arr = np.array(lemmas, dtype=object)
    return pa.table({
        "part": pa.array(np.full(len(row), part, dtype=np.int32)),
        "row": pa.array(row, pa.int64()),
        "key": pa.array(_keys(part, row), pa.int64()),
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
        "key": pa.array(_keys(part, urow), pa.int64()),
        "wnids": wnids,
        "n_classes": pa.array(counts.astype(np.int16)),
        "multi_label": pa.array(counts > 1),
    }, schema=ROWS_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------

def _read_all(out_dir: Path, kind: str, schema: pa.Schema) -> pa.Table:
    files = sorted((out_dir / kind).glob("part-*.parquet"))
    if not files:
        return schema.empty_table()
    return pa.concat_tables(pq.read_table(f, schema=schema) for f in files)


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
    from .matching import LemmaIndex

    out = Path(out_dir)
    matches = _read_all(out, "matches", MATCHES_SCHEMA).to_pandas()
    rows = _read_all(out, "rows", ROWS_SCHEMA).select(["key", "n_classes"]).to_pandas()
    single = matches["key"].isin(rows.loc[rows["n_classes"] == 1, "key"])
    lemma_counts = (pd.DataFrame(lemma_pairs, columns=["lemma", "wnid"])
                    .merge(matches.assign(single=single).groupby(["lemma", "wnid"])
                           .agg(n_rows=("key", "nunique"), n_single_label=("single", "sum"))
                           .reset_index(), on=["lemma", "wnid"], how="left")
                    .fillna({"n_rows": 0, "n_single_label": 0})
                    .astype({"n_rows": "int64", "n_single_label": "int64"}))
    per_class = (matches.assign(single=single).drop_duplicates(["key", "wnid"])
                 .groupby("wnid").agg(n_rows=("key", "size"), n_single_label=("single", "sum")))
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
    n_matched = len(rows)
    n_multi = int((rows["n_classes"] > 1).sum())
    summary = {
        "mode": mode, "n_parts": len(stats), "n_rows": n_rows,
        "n_null_captions": int(sum(s.get("n_null", 0) for s in stats)),
        "n_matched_rows": n_matched, "n_matches": len(matches), "n_multi_label_rows": n_multi,
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
