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

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import read_json, read_part, sweep_run_files
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
    matched ``lemmas`` (list, in match-table order); plus counts (rows, multi-label dropped).

    All parts at once: the reference path of the tests. Stage 02 itself works part by part
    (``build_candidates``) with ``single_label_table`` on one part's tables."""
    matches_dir = Path(matches_dir)
    rows = _read_stage01(matches_dir / "rows", ["part", "row", "key", "wnids", "n_classes"])
    matches = _read_stage01(matches_dir / "matches", ["key", "lemma", "wnid"])
    return single_label_table(rows, matches, matches_dir)


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
# 1+2 part by part: what stage 02 runs (memory set by the part and chunk sizes, not the run's)

CANDIDATES_DIR = "candidates"  # candidates/part-%05d.parquet: one LAION part's candidates


def _part_of(path: Path) -> int:
    from .keys import part_number

    return part_number(path)


def stage01_parts(matches_dir: str | Path) -> list[int]:
    """The part numbers stage 01 finished (its ``rows/part-%05d.parquet`` files)."""
    files = sorted((Path(matches_dir) / "rows").glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{Path(matches_dir) / 'rows'}: no part-*.parquet files; run "
                                "stage 01 (notebooks/01_synset_matching.py) or fix matches_dir")
    return [_part_of(f) for f in files]


def _stage01_part(matches_dir: Path, kind: str, part: int, columns: Sequence[str]) -> pa.Table:
    from .shards import part_file

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
    from .embedding_store import embed_with_store
    from .encoders.common import cosine_rowwise
    from .io import parquet_writer
    from .shards import part_file

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
    ``laionet.shards.map_parts``, in this process: the encoder stays on its device).

    Checked before any work: every part stage 01 matched has a LAION file, every matched wnid a
    synset text. A part is skipped when its marker ``done/part-%05d.json`` holds the same encoder,
    synset texts, LAION file and stage-01 tables (a killed run resumes; a finished part is never
    recomputed). ``on_part``: called with each part number before it is computed (tests count).
    Returns the ``MapResult``; its markers' stats are what ``candidate_counts`` adds up.
    """
    from .shards import map_parts, part_file
    from .stage import fingerprint

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
    from .shards import done_stats

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


def concat_frames(frames: Iterable[pd.DataFrame], columns: Sequence[str] | None = None
                  ) -> pd.DataFrame:
    frames = [f for f in frames]
    non_empty = [f for f in frames if len(f)]
    out = pd.concat(non_empty or frames[:1], ignore_index=True) if frames else pd.DataFrame(
        columns=list(columns or CANDIDATE_COLUMNS))
    return out.reset_index(drop=True)


def assemble_candidates(out_dir: str | Path, dest: str | Path) -> int:
    """Concatenate the part files into one parquet file (``candidates.parquet``) by streaming:
    one row group per read batch, never the whole table in memory. Returns the row count."""
    from .io import parquet_writer

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


def select_laionet_parts(source, threshold: float, nsfw_rule: str = "paper", op: str = ">",
                         batch_rows: int = 65_536) -> pd.DataFrame:
    """``select_laionet`` over the part files, batch by batch: only LAIONet (small by design,
    822k rows in the paper) is held, never the candidates."""
    nsfw_mask(pd.Series([], dtype=object), nsfw_rule)  # a bad rule fails before any read
    above(np.zeros(0), threshold, op)
    return concat_frames(select_laionet(df, threshold, nsfw_rule, op)
                         for df in iter_candidates(source, batch_rows=batch_rows))


def threshold_curves_parts(source, thresholds: Sequence[float], nsfw_rule: str = "paper",
                           op: str = ">", batch_rows: int = 262_144) -> pd.DataFrame:
    """``threshold_curves`` streamed over the part files: rows above each threshold are summed
    per batch (searchsorted), each class's best similarity kept (one number per class)."""
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if op == ">" else "left"
    n_rows = np.zeros(len(t), np.int64)
    best: dict[str, float] = {}
    for df in iter_candidates(source, ["wnid", "NSFW", "similarity"], batch_rows):
        ok = df[nsfw_mask(df["NSFW"], nsfw_rule) & df["similarity"].notna().to_numpy()]
        sims = np.sort(ok["similarity"].to_numpy(np.float64))
        n_rows += len(sims) - np.searchsorted(sims, t, side)
        for w, m in ok.groupby("wnid")["similarity"].max().items():
            best[w] = max(best.get(w, -np.inf), float(m))
    b = np.sort(np.fromiter(best.values(), np.float64, len(best)))
    return pd.DataFrame({"threshold": t, "n_rows": n_rows,
                         "n_classes": len(b) - np.searchsorted(b, t, side)})


def similarity_histogram(source, nsfw_rule: str = "paper", bins: int = 60,
                         batch_rows: int = 262_144) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram of the similarity of the rows passing the NSFW rule, in two streamed passes
    (range, then counts): (counts, edges, n rows with a similarity). The same bins as
    ``np.histogram(values, bins)``."""
    lo, hi, n = np.inf, -np.inf, 0
    cols = ["NSFW", "similarity"]
    for df in iter_candidates(source, cols, batch_rows):
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"].dropna().to_numpy(np.float64)
        if len(v):
            lo, hi, n = min(lo, v.min()), max(hi, v.max()), n + len(v)
    if not n:
        return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1), 0
    edges = np.histogram_bin_edges(np.array([lo, hi]), bins)
    counts = np.zeros(bins, np.int64)
    for df in iter_candidates(source, cols, batch_rows):
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"].dropna().to_numpy(np.float64)
        counts += np.histogram(v, edges)[0]
    return counts, edges, n


def sfw_stats(source, nsfw_rule: str = "paper", batch_rows: int = 262_144) -> dict:
    """Over the rows passing the NSFW rule, streamed: how many (n_sfw), how many have a
    similarity (n), its min and max (NaN when none); and the classes of all candidates."""
    n_sfw = n = 0
    lo, hi = np.inf, -np.inf
    classes: set[str] = set()
    for df in iter_candidates(source, ["wnid", "NSFW", "similarity"], batch_rows):
        classes |= set(df["wnid"].dropna())
        v = df.loc[nsfw_mask(df["NSFW"], nsfw_rule), "similarity"]
        n_sfw += len(v)
        v = v.dropna().to_numpy(np.float64)
        if len(v):
            lo, hi, n = min(lo, v.min()), max(hi, v.max()), n + len(v)
    return {"n_sfw": n_sfw, "n": n, "min": lo if n else float("nan"),
            "max": hi if n else float("nan"), "classes": sorted(classes)}


def lemma_similarities_parts(source, wnid: str, class_lemmas: Sequence[str] = ()
                             ) -> tuple[pd.DataFrame, pd.Series]:
    """``lemma_similarities`` of one class, reading only that class's rows batch by batch."""
    one = concat_frames(iter_candidates(source, ["key", "wnid", "lemmas", "similarity"],
                                        filter=lambda d: (d["wnid"] == wnid).to_numpy()),
                        ["key", "wnid", "lemmas", "similarity"])
    return lemma_similarities(one, wnid, class_lemmas)


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


def _candidate_evidence(candidates, nsfw_rule: str) -> tuple[int, int, int, float, str | None]:
    """(candidates, passing the NSFW rule, of those with a similarity, best similarity, its
    class) of a frame or, read batch by batch, of a stage-02 folder / part files."""
    frames = [candidates] if isinstance(candidates, pd.DataFrame) else iter_candidates(
        candidates, ["wnid", "NSFW", "similarity"])
    n = n_ok = n_sim = 0
    best, best_wnid = -np.inf, None
    for df in frames:
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
    the threshold (its value and class named). ``candidates``: a frame, or a stage-02 folder /
    part files (streamed, one batch in memory)."""
    if len(laionet):
        return
    n, n_ok, n_sim, best, best_wnid = _candidate_evidence(candidates, nsfw_rule)
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


def summarize_sweep(sweep_json_path: str | Path) -> pd.DataFrame:
    """One row per run of a stage-02 sweep (``run_all.sh sweep 02 threshold ...``): the swept
    value and that run's summary.json (n_laionet, n_classes_laionet, ...)."""
    param, runs = sweep_run_files(sweep_json_path, "summary.json")
    rows = [{param: run["value"], **read_json(path), "out_dir": run["out_dir"]} for run, path in runs]
    return pd.DataFrame(rows).sort_values(param).reset_index(drop=True)


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
