"""Stage 02's candidates on disk: one parquet file per LAION part, made and read batch by batch.

``build_stage02`` writes each part's single-label rows with their LAION columns and similarity
(``build_candidates``: resumable, part by part) and ``candidates.parquet``; ``CandidateFiles``
reads them back batch by batch for ``laionet.method.selection`` (never all candidates at once).
"""

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from laionet.jobs.embedding_store import EmbeddingStore, embed_with_store
from laionet.jobs.parts import MapResult, done_stats, map_parts, part_file
from laionet.method.selection import CANDIDATE_COLUMNS, single_label_table
from laionet.models.common import cosine_rowwise
from laionet.sources.laion import LAION_COLUMNS, check_keys, part_files, part_number
from laionet.util.files import parquet_writer
from laionet.util.fingerprint import fingerprint

CANDIDATES_DIR = "candidates"  # candidates/part-%05d.parquet: one LAION part's candidates


def _check_texts(wnids: Iterable[str], texts: pd.Index) -> None:
    unknown = sorted(set(wnids) - set(texts))
    if unknown:
        raise KeyError(f"wnid(s) {unknown[:5]} have matches but no synset text; the class table "
                       "given to stage 02 differs from stage 01's `classes`")


def _stage01_part(matches_dir: Path, kind: str, part: int, columns: Sequence[str]) -> pa.Table:
    f = part_file(matches_dir, kind, part)
    if not f.is_file():
        raise FileNotFoundError(f"{f}: stage 01 wrote rows/ for part {part} but not {kind}/; "
                                "rerun stage 01")
    try:
        return pq.read_table(f, columns=list(columns))
    except pa.ArrowInvalid as exc:  # e.g. a missing column
        raise ValueError(f"{f}: {exc} (stage 01 contract, docs/DEVELOPING.md)") from exc


def iter_joined(rows: pa.Table, part_path: str | Path, columns: Sequence[str] = LAION_COLUMNS,
                read_batch: int = 65_536, chunk_rows: int = 1) -> Iterator[pa.Table]:
    """``rows`` of one part (sorted by row) with their LAION ``columns``, the part read
    ``read_batch`` rows at a time, in tables of about ``chunk_rows`` rows (the last smaller)."""
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
    base, lo, buf = 0, 0, []
    for batch in pf.iter_batches(batch_size=read_batch, columns=list(columns)):
        if lo >= len(row):
            break
        hi = int(np.searchsorted(row, base + batch.num_rows, "left"))
        if hi > lo:
            taken = pa.Table.from_batches([batch]).take(pa.array(row[lo:hi] - base))
            buf.append(rows.slice(lo, hi - lo))
            for c in columns:
                buf[-1] = buf[-1].append_column(c, taken[c])
            if sum(t.num_rows for t in buf) >= chunk_rows:
                yield pa.concat_tables(buf)
                buf = []
        lo, base = hi, base + batch.num_rows
    if buf:
        yield pa.concat_tables(buf)


def candidates_part(part_path: str | Path, part: int, matches_dir: str | Path,
                    class_emb: dict[str, np.ndarray], encoder, store, out_dir: str | Path,
                    batch_size: int = 64, chunk_rows: int = 65_536, read_batch: int = 65_536,
                    progress: bool = False) -> dict:
    """Stage 02 on one LAION part: its single-label rows of stage 01 (A5) with their LAION
    columns, captions embedded through ``store`` and their cosine with the class's synset text
    (A4; ``class_emb``: wnid -> unit vector), written ``chunk_rows`` rows at a time to
    ``candidates/part-%05d.parquet`` (renamed into place when done). Returns the part's counts."""
    matches_dir = Path(matches_dir)
    rows = _stage01_part(matches_dir, "rows", part, ["part", "row", "key", "wnids", "n_classes"])
    matches = _stage01_part(matches_dir, "matches", part, ["key", "lemma", "wnid"])
    single, counts = single_label_table(rows, matches, part_file(matches_dir, "rows", part))
    rows_wnids = rows["wnids"]
    del rows, matches
    check_keys(single)
    wnids = pd.Index(sorted(class_emb))
    table = np.stack([class_emb[w] for w in wnids]) if len(wnids) else np.zeros((0, 1), np.float32)
    laion = pq.ParquetFile(part_path).schema_arrow  # the LAION columns keep the part's own types
    schema = pa.schema([("key", pa.int64()), ("part", pa.int32()), ("row", pa.int64()),
                        ("wnid", pa.string()), ("lemmas", pa.list_(pa.string())),
                        *(laion.field(c) for c in LAION_COLUMNS), ("similarity", pa.float32())])
    n_unlikely = 0
    with parquet_writer(part_file(out_dir, CANDIDATES_DIR, part), schema) as out:
        for chunk in iter_joined(single, part_path, read_batch=read_batch, chunk_rows=chunk_rows):
            w = chunk["wnid"].to_numpy(zero_copy_only=False)
            idx = wnids.get_indexer(w)
            if (idx < 0).any():
                _check_texts(w, wnids)
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
                     progress: bool = False, on_part=None) -> MapResult:
    """``candidates_part`` over every part stage 01 matched, in this process (the encoder stays
    on its device), once each part has a LAION file and each matched wnid a synset text. A part
    is skipped when its ``done/`` marker holds the same encoder, texts, file and stage-01 tables."""
    matches_dir, out_dir = Path(matches_dir), Path(out_dir)
    nums = [part_number(f) for f in sorted((matches_dir / "rows").glob("part-*.parquet"))]
    if not nums:
        raise FileNotFoundError(f"{matches_dir / 'rows'}: no part-*.parquet files; run stage 01 "
                                "(notebooks/01_synset_matching.py) or fix matches_dir")
    files = part_files(laion_parts)
    missing = [p for p in nums if p not in files]
    if missing:
        raise FileNotFoundError(f"part {missing[0]} has matches but no LAION file among "
                                f"laion_parts (have parts {sorted(files)}); fix laion_parts")
    matched = set()
    for p in nums:  # one column of one part at a time
        w = _stage01_part(matches_dir, "rows", p, ["wnids"])["wnids"]
        matched |= set(pc.unique(pc.list_flatten(w)).to_pylist())
    _check_texts(matched, texts_by_wnid.index)
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


def candidate_counts(out_dir: str | Path) -> dict:
    """Counts over every finished part's marker: rows matched, single-label, dropped, candidates,
    NSFW == UNLIKELY; classes with any match (the paper's 978) and with single-label rows."""
    names = ("n_matched_rows", "n_single_label", "n_multi_label_dropped", "n_candidates",
             "n_nsfw_unlikely")
    stats = done_stats(out_dir)
    out = {n: int(sum(s.get(n, 0) for s in stats)) for n in names}
    for n in ("classes_matched", "classes_single_label"):  # union over parts
        out[f"n_{n}"] = len({w for s in stats for w in s.get(n, [])})
    return out


class CandidateFiles:
    """Stage 02's candidates (its folder, a parquet file or files), read batch by batch."""

    def __init__(self, source: str | Path | Sequence[Path], batch_rows: int = 262_144):
        self.source, self.batch_rows = source, batch_rows

    def files(self) -> list[Path]:
        if not isinstance(self.source, (str, Path)):
            return [Path(f) for f in self.source]
        src = Path(self.source)
        files = [src] if src.is_file() else sorted((src / CANDIDATES_DIR).glob("part-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{src / CANDIDATES_DIR}: no part files; run stage 02 "
                                    "(notebooks/02_caption_filtering.py)")
        return files

    def batches(self, columns: Sequence[str] | None = None, filter=None) -> Iterator[pd.DataFrame]:
        """DataFrames of <= ``batch_rows`` rows; ``filter(df) -> bool mask`` keeps those rows."""
        for f in self.files():
            for batch in pq.ParquetFile(f).iter_batches(
                    batch_size=self.batch_rows, columns=list(columns) if columns else None):
                df = batch.to_pandas()
                yield df[filter(df)] if filter is not None else df


def assemble_candidates(out_dir: str | Path, dest: str | Path) -> int:
    """The part files streamed into one parquet file (``candidates.parquet``); the row count."""
    files = CandidateFiles(out_dir).files()
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


def build_stage02(matches_dir: str | Path, laion_parts: str | Iterable[str | Path],
                  texts_by_wnid: pd.Series, encoder, cache_root: str | Path, out_dir: str | Path,
                  batch_size: int = 64, chunk_rows: int = 65_536) -> tuple[CandidateFiles, dict]:
    """Stage 02's heavy work: every part's candidates (captions embedded into the ``laion`` store
    of ``cache_root``) and ``candidates.parquet``; the candidates and their counts."""
    store = EmbeddingStore.at(cache_root, "laion", encoder.name)
    result = build_candidates(matches_dir, laion_parts, texts_by_wnid, encoder, store, out_dir,
                              batch_size=batch_size, chunk_rows=chunk_rows, progress=True)
    assemble_candidates(out_dir, Path(out_dir) / "candidates.parquet")
    print(f"{len(result.done)} part(s) computed, {len(result.skipped)} resumed")
    return CandidateFiles(out_dir), candidate_counts(out_dir)
