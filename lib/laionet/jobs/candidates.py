"""Stage 02's candidates on disk: one parquet file per LAION part, made and read batch by batch.

``build_candidates`` runs stage 02 part by part (``laionet.jobs.parts.map_parts``: a killed run
resumes at the first unfinished part): a part's single-label rows of stage 01 joined to its LAION
columns while the part is read in batches, captions embedded through the embedding store
``chunk_rows`` at a time, their cosine with the class's synset text, written to
``candidates/part-%05d.parquet``. ``CandidateFiles`` reads them back batch by batch for the
functions of ``laionet.method.selection`` (memory: one batch, never all candidates);
``assemble_candidates`` concatenates them into one file by streaming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from laionet.method.selection import CANDIDATE_COLUMNS, single_label_table
from laionet.sources.laion import KEY_STRIDE, LAION_COLUMNS, join_laion_columns, part_files, row_key
from laionet.models.common import cosine_rowwise
from laionet.jobs.embedding_store import embed_with_store
from laionet.sources.laion import part_number
from laionet.jobs.parts import done_stats, map_parts, part_file
from laionet.util.files import parquet_writer
from laionet.util.fingerprint import fingerprint


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
    matched ``lemmas`` (list, in match-table order); plus counts (rows, multi-label dropped).

    All parts at once: the reference path of the tests. Stage 02 itself works part by part
    (``build_candidates``) with ``single_label_table`` on one part's tables."""
    matches_dir = Path(matches_dir)
    rows = _read_stage01(matches_dir / "rows", ["part", "row", "key", "wnids", "n_classes"])
    matches = _read_stage01(matches_dir / "matches", ["key", "lemma", "wnid"])
    return single_label_table(rows, matches, matches_dir)


def load_candidates(matches_dir: str | Path, laion_parts: str | Iterable[str | Path]
                    ) -> tuple[pd.DataFrame, dict]:
    """Single-label matched rows with their LAION columns (no similarity yet) and counts."""
    single, counts = single_label_rows(matches_dir)
    table = join_laion_columns(single, part_files(laion_parts))
    return table.to_pandas(), counts


def add_similarity(candidates: pd.DataFrame, texts_by_wnid: pd.Series, encoder,
                   store, batch_size: int = 64, progress: bool = False,
                   stats: dict | None = None) -> pd.DataFrame:
    """Add ``similarity``: cosine of each caption (embedded through ``store``, an
    ``EmbeddingStore`` keyed by row key and caption; null -> "None") and the synset text of its
    wnid (each class text embedded once). ``stats`` (a dict) gets ``n_embedded``, the captions
    embedded by this call (per part: ``embed_captions_by_part``)."""

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


CANDIDATES_DIR = "candidates"  # candidates/part-%05d.parquet: one LAION part's candidates


def _part_of(path: Path) -> int:
    return part_number(path)


def stage01_parts(matches_dir: str | Path) -> list[int]:
    """The part numbers stage 01 finished (its ``rows/part-%05d.parquet`` files)."""
    files = sorted((Path(matches_dir) / "rows").glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{Path(matches_dir) / 'rows'}: no part-*.parquet files; run "
                                "stage 01 (notebooks/01_synset_matching.py) or fix matches_dir")
    return [_part_of(f) for f in files]


def _stage01_part(matches_dir: Path, kind: str, part: int, columns: Sequence[str]) -> pa.Table:
    f = part_file(matches_dir, kind, part)
    if not f.is_file():
        raise FileNotFoundError(f"{f}: stage 01 wrote rows/ for part {part} but not {kind}/; "
                                "rerun stage 01")
    t = pq.read_table(f, columns=list(columns))
    missing = [c for c in columns if c not in t.column_names]
    if missing:
        raise ValueError(f"{f}: missing column(s) {missing} (stage 01 contract, "
                         "docs/DEVELOPING.md)")
    return t


def iter_joined(rows: pa.Table, part_path: str | Path, columns: Sequence[str] = LAION_COLUMNS,
                read_batch: int = 65_536) -> Iterator[pa.Table]:
    """``rows`` of one part (part, row, ..., sorted by row) with the LAION ``columns`` of the same
    rows, streamed: the part is read ``read_batch`` rows at a time (only ``columns``) and each
    batch gives the rows inside it. Yields tables in ``rows``' order."""
    part_path = Path(part_path)
    pf = pq.ParquetFile(part_path)
    row = rows["row"].to_numpy()
    if len(row) and row[-1] >= pf.metadata.num_rows:
        bad = int(row[row >= pf.metadata.num_rows][0])
        raise IndexError(f"{part_path}: row {bad} is past its {pf.metadata.num_rows} rows; "
                         "stage 01 ran on another version of this part")
    if len(row) and (np.diff(row) < 0).any():
        raise ValueError(f"{part_path}: stage-01 rows are not sorted by row")
    missing = [c for c in columns if pf.schema_arrow.get_field_index(c) < 0]
    if missing:
        raise ValueError(f"{part_path}: no column(s) {missing} (columns: "
                         f"{pf.schema_arrow.names}); a LAION part holds {list(columns)}")
    base, lo = 0, 0
    for batch in pf.iter_batches(batch_size=read_batch, columns=list(columns)):
        if lo >= len(row):
            break
        hi = int(np.searchsorted(row, base + batch.num_rows, "left"))
        if hi > lo:
            taken = pa.Table.from_batches([batch]).take(pa.array(row[lo:hi] - base))
            piece = rows.slice(lo, hi - lo)
            for c in columns:
                piece = piece.append_column(c, taken[c])
            yield piece
        lo, base = hi, base + batch.num_rows


def candidate_schema(laion: pa.Schema) -> pa.Schema:
    """The columns of a candidates file: row key, part, row, wnid, matched lemmas, the LAION
    columns with the part's own types, similarity (float32)."""
    return pa.schema([("key", pa.int64()), ("part", pa.int32()), ("row", pa.int64()),
                      ("wnid", pa.string()), ("lemmas", pa.list_(pa.string())),
                      *(laion.field(c) for c in LAION_COLUMNS), ("similarity", pa.float32())])


def _check_keys(rows: pa.Table) -> None:
    part, row, key = (rows[c].to_numpy() for c in ("part", "row", "key"))
    bad_key = np.flatnonzero(key != row_key(part, row))
    if len(bad_key):
        i = bad_key[0]
        raise ValueError(f"row key {key[i]} != part {part[i]} * {KEY_STRIDE} + row {row[i]}: "
                         "stage 01 keys are corrupt; rerun stage 01")


def _rechunk(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The same rows, in tables of about ``rows`` rows (the last one smaller)."""
    buf, n = [], 0
    for t in tables:
        buf.append(t)
        n += t.num_rows
        if n >= rows:
            yield pa.concat_tables(buf)
            buf, n = [], 0
    if buf:
        yield pa.concat_tables(buf)


def candidates_part(part_path: str | Path, part: int, matches_dir: str | Path,
                    class_emb: dict[str, np.ndarray], encoder, store, out_dir: str | Path,
                    batch_size: int = 64, chunk_rows: int = 65_536, read_batch: int = 65_536,
                    progress: bool = False) -> dict:
    """Stage 02 on one LAION part: its single-label rows of stage 01, joined to the part's LAION
    columns, captions embedded through ``store`` (``embed_with_store``: one store shard per chunk,
    only pairs not stored yet) and their cosine with the class's synset text (``class_emb``: wnid
    -> unit vector). Written, ``chunk_rows`` rows at a time, to ``candidates/part-%05d.parquet``
    (renamed into place when the part is done); memory: one chunk and one read batch.
    Returns the part's counts."""

    matches_dir = Path(matches_dir)
    rows = _stage01_part(matches_dir, "rows", part, ["part", "row", "key", "wnids", "n_classes"])
    matches = _stage01_part(matches_dir, "matches", part, ["key", "lemma", "wnid"])
    single, counts = single_label_table(rows, matches, part_file(matches_dir, "rows", part))
    rows_wnids = rows["wnids"]
    del rows, matches
    _check_keys(single)
    wnids = np.array(sorted(class_emb), dtype=object)
    table = np.stack([class_emb[w] for w in wnids]) if len(wnids) else np.zeros((0, 1), np.float32)
    schema = candidate_schema(pq.ParquetFile(part_path).schema_arrow)
    n_unlikely = 0
    with parquet_writer(part_file(out_dir, CANDIDATES_DIR, part), schema) as out:
        for chunk in _rechunk(iter_joined(single, part_path, LAION_COLUMNS, read_batch), chunk_rows):
            w = chunk["wnid"].to_numpy(zero_copy_only=False).astype(object)
            idx = np.searchsorted(wnids, w)
            if ((idx >= len(wnids)) | (wnids[np.minimum(idx, max(len(wnids) - 1, 0))] != w)).any():
                bad = sorted(set(w) - set(wnids))
                raise KeyError(f"wnid(s) {bad[:5]} have matches but no synset text; the class "
                               "table given to stage 02 differs from stage 01's `classes`")
            emb = embed_with_store(encoder, chunk["key"].to_numpy(), chunk["TEXT"], store,
                                   batch_size=batch_size, progress=progress)
            chunk = chunk.append_column("similarity", pa.array(cosine_rowwise(emb, table[idx]),
                                                                pa.float32()))
            t = chunk.select(CANDIDATE_COLUMNS).cast(schema)
            n_unlikely += int(pc.sum(pc.equal(t["NSFW"], "UNLIKELY")).as_py() or 0)
            out.write_table(t)
    counts.pop("n_classes_matched", None)  # not additive over parts: the classes themselves
    counts.pop("n_classes_single_label", None)
    return {**counts, "n_candidates": counts["n_single_label"], "n_nsfw_unlikely": n_unlikely,
            "classes_matched": sorted(pc.unique(pc.list_flatten(rows_wnids)).to_pylist()),
            "classes_single_label": sorted(pc.unique(single["wnid"]).to_pylist())}


def build_candidates(matches_dir: str | Path, laion_parts: str | Iterable[str | Path],
                     texts_by_wnid: pd.Series, encoder, store, out_dir: str | Path,
                     batch_size: int = 64, chunk_rows: int = 65_536, read_batch: int = 65_536,
                     progress: bool = False, on_part=None):
    """Stage 02's candidates, one LAION part at a time (``candidates_part`` through
    ``laionet.jobs.parts.map_parts``, in this process: the encoder stays on its device).

    Checked before any work: every part stage 01 matched has a LAION file, every matched wnid a
    synset text. A part is skipped when its marker ``done/part-%05d.json`` holds the same encoder,
    synset texts, LAION file and stage-01 tables (a killed run resumes; a finished part is never
    recomputed). ``on_part``: called with each part number before it is computed (tests count).
    Returns the ``MapResult``; its markers' stats are what ``candidate_counts`` adds up.
    """

    matches_dir, out_dir = Path(matches_dir), Path(out_dir)
    nums = stage01_parts(matches_dir)
    files = part_files(laion_parts)
    missing = [p for p in nums if p not in files]
    if missing:
        raise FileNotFoundError(f"part {missing[0]} has matches but no LAION file among "
                                f"laion_parts (have parts {sorted(files)}); fix laion_parts")
    matched = set()
    for p in nums:  # one column of one part at a time
        w = _stage01_part(matches_dir, "rows", p, ["wnids"])["wnids"]
        matched |= set(pc.unique(pc.list_flatten(w)).to_pylist())
    unknown = sorted(matched - set(texts_by_wnid.index))
    if unknown:
        raise KeyError(f"wnid(s) {unknown[:5]} have matches but no synset text; the class table "
                       "given to stage 02 differs from stage 01's `classes`")
    all_texts = texts_by_wnid[~texts_by_wnid.index.duplicated()]
    texts = all_texts.loc[sorted(matched)]
    emb = encoder.embed_texts(texts.tolist(), batch_size=batch_size) if len(texts) else []
    class_emb = dict(zip(texts.index, emb))

    def task(path, part):
        if on_part is not None:
            on_part(part)
        return candidates_part(path, part, matches_dir, class_emb, encoder, store, out_dir,
                               batch_size=batch_size, chunk_rows=chunk_rows,
                               read_batch=read_batch, progress=progress)

    # the whole class table's texts (not only the matched ones): a part whose stage-01 table
    # changed is redone alone, the others keep their markers
    key = fingerprint({"encoder": encoder.name, "texts": all_texts.sort_index().to_dict(),
                       "stage": "02"})
    return map_parts(task, [files[p] for p in nums], out_dir, n_workers=1,
                     desc="candidates by part", fingerprint=key,
                     part_inputs=lambda p: [part_file(matches_dir, "rows", p),
                                            part_file(matches_dir, "matches", p)])


def candidate_files(out_dir: str | Path) -> list[Path]:
    """The per-part candidate files of a stage-02 folder, in part order."""
    files = sorted((Path(out_dir) / CANDIDATES_DIR).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{Path(out_dir) / CANDIDATES_DIR}: no part files; run stage 02 "
                                "(notebooks/02_caption_filtering.py)")
    return files


def candidate_counts(out_dir: str | Path) -> dict:
    """Counts over every finished part (from the markers): matched rows, single-label rows,
    multi-label dropped, candidates, NSFW == UNLIKELY, classes with any match and with
    single-label rows."""

    names = ("n_matched_rows", "n_single_label", "n_multi_label_dropped", "n_candidates",
             "n_nsfw_unlikely")
    stats = done_stats(out_dir)
    out = {n: int(sum(s.get(n, 0) for s in stats)) for n in names}
    for n in ("classes_matched", "classes_single_label"):  # union over parts
        out[f"n_{n}"] = len({w for s in stats for w in s.get(n, [])})
    return out


def iter_candidates(source: str | Path | Sequence[Path], columns: Sequence[str] | None = None,
                    batch_rows: int = 65_536, filter=None) -> Iterator[pd.DataFrame]:
    """Candidates as pandas frames of at most ``batch_rows`` rows, in key order, from a stage-02
    folder (its part files), a candidates parquet file or a list of files. Memory: one batch.
    ``filter(df) -> bool mask``: only those rows are yielded (frames may then be empty)."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        files = [source] if source.is_file() else candidate_files(source)
    else:
        files = list(source)
    for f in files:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_rows,
                                     columns=list(columns) if columns else None):
            df = batch.to_pandas()
            yield df[filter(df)] if filter is not None else df


class CandidateFiles:
    """Stage 02's candidates on disk, read batch by batch: the ``candidates`` the functions of
    ``laionet.method.selection`` take. ``source``: a stage-02 folder (its part files), a
    candidates parquet file or a list of files. Memory: one batch of ``batch_rows`` rows."""

    def __init__(self, source: str | Path | Sequence[Path], batch_rows: int = 262_144):
        self.source, self.batch_rows = source, batch_rows

    def batches(self, columns: Sequence[str] | None = None, filter=None) -> Iterator[pd.DataFrame]:
        return iter_candidates(self.source, columns, self.batch_rows, filter)


def assemble_candidates(out_dir: str | Path, dest: str | Path) -> int:
    """Concatenate the part files into one parquet file (``candidates.parquet``) by streaming:
    one row group per read batch, never the whole table in memory. Returns the row count."""

    files = candidate_files(out_dir)
    schema = pq.ParquetFile(files[0]).schema_arrow
    n = 0
    with parquet_writer(dest, schema) as w:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                t = pa.Table.from_batches([batch])
                if t.schema != schema:
                    try:
                        t = t.cast(schema)
                    except (pa.ArrowInvalid, ValueError) as exc:
                        raise ValueError(f"{f}: columns {t.schema} cannot be joined with "
                                         f"{files[0]}'s {schema}: LAION parts of different "
                                         "schemas") from exc
                w.write_table(t)
                n += t.num_rows
    return n


