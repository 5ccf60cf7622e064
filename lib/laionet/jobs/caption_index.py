"""§4.4's caption index (A19, C.6): LAION's caption embeddings in a faiss inner-product index
(cosines) keyed by row key, ``Flat`` on small data, IVF-PQ (40 bytes a caption) at LAION scale
(``suggest_factory``); PQ scores are re-scored exactly (``caption_embeddings``). ``PartedIndex``:
one faiss file per part (a copy of the once-trained index + the part's vectors, then its commit
marker), so a killed build (``index_parts``) resumes after its last finished part and a search
merges the parts' top-k. Each part file repeats the quantizer (~50 bytes a caption instead of 40
at IVF65536 over 32 parts; benchmarks/bench_index_bytes.py measures both)."""

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from laionet.jobs.embedding_store import embed_with_store
from laionet.sources.laion import join_laion_columns, row_key, split_key
from laionet.util.files import atomic_path, read_json, write_json
from laionet.util.fingerprint import Marker, fingerprint

META = "meta.json"
TRAINED = "trained.faiss"
FLAT_MAX = 200_000  # exact search up to this many captions (4 * dim + 8 bytes each: 0.4 GB)
PQ_BYTES = 32   # + 8 bytes of row key = 40 bytes per caption: the authors' 16 GB / 413.9M = 41


def suggest_factory(n_vectors: int, dim: int) -> str:
    """``Flat`` up to ``FLAT_MAX`` captions; beyond, ``IVF<~4 sqrt(n)>,PQ32``: 40 bytes a caption
    as the authors' 16 GB index of 413.9M (LAION-400M: ``IVF65536,PQ32``)."""
    if n_vectors <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(n_vectors))))
    m = PQ_BYTES if dim % PQ_BYTES == 0 else next(m for m in (dim // 8, dim // 4, dim // 2, dim)
                                                  if dim % m == 0)
    return f"IVF{nlist},PQ{m}"


def part_rows(parts: Mapping[int, str | os.PathLike]) -> dict[int, int]:
    """Rows of each LAION part, from its parquet footer."""
    return {int(p): pq.ParquetFile(f).metadata.num_rows for p, f in parts.items()}


def n_lists(factory: str) -> int:
    """The inverted-list count of an ``IVF<n>...`` factory string (0 for others)."""
    m = re.match(r"IVF(\d+)", factory.upper())
    return int(m.group(1)) if m else 0


def auto_train_size(factory: str, n_total: int) -> int:
    """Training sample of an approximate index: 40 vectors per inverted list (faiss warns below
    39), at least 2**16 (PQ: 256 centroids per sub-vector), at most every caption."""
    nl = n_lists(factory)
    return 0 if not nl else int(min(n_total, max(40 * nl, 2 ** 16)))


def _gpu(index):
    """``index`` on every GPU when GPU faiss sees one; types the GPU code lacks stay on the CPU."""
    try:
        return faiss.index_cpu_to_all_gpus(index) if faiss.get_num_gpus() > 0 else index
    except (RuntimeError, AttributeError):
        return index


def _cpu(index):
    return faiss.index_gpu_to_cpu(index) if type(index).__name__.startswith("Gpu") else index


def _part_name(part: int) -> str:
    return f"part-{int(part):05d}"


class PartedIndex:
    """A caption index kept as one faiss file per LAION part (see the layout above)."""

    def __init__(self, folder: str | os.PathLike, factory: str, dim: int, nprobe: int = 32):
        self.folder = Path(folder)
        self.factory, self.dim, self.nprobe = factory, int(dim), nprobe

    @classmethod
    def open(cls, folder: str | os.PathLike, dim: int, factory: str = "Flat",
             nprobe: int = 32) -> "PartedIndex":
        """The index in ``folder`` (made when missing; another factory/dim raises)."""
        folder = Path(folder)
        meta = folder / META
        if meta.is_file():
            m = read_json(meta)
            if m.get("layout") != "parted" or m["factory"] != factory or int(m["dim"]) != int(dim):
                raise ValueError(f"{folder}: holds a {m.get('factory')} index over "
                                 f"{m.get('dim')}-d vectors ({m.get('layout', 'one file')}), asked "
                                 f"for {factory} over {dim}-d; use another folder or delete it")
        else:
            write_json({"layout": "parted", "factory": factory, "dim": int(dim)}, meta)
        return cls(folder, factory, dim, nprobe)

    def records(self) -> dict[int, dict]:
        """part -> marker (rows, file, bytes, source) of every finished part."""
        return {int(r["part"]): r for r in map(read_json, sorted(self.folder.glob("part-*.json")))}

    @property
    def parts(self) -> set[int]:
        return set(self.records())

    @property
    def ntotal(self) -> int:
        return int(sum(r["rows"] for r in self.records().values()))

    def bytes_per_caption(self) -> float:
        records = self.records().values()
        n = sum(r["rows"] for r in records)
        return sum(r["bytes"] for r in records) / n if n else float("nan")

    @property
    def needs_training(self) -> bool:
        return n_lists(self.factory) > 0 and not (self.folder / TRAINED).is_file()

    def _empty(self):
        """A fresh empty index: the trained one for IVF, else one with ids."""
        if n_lists(self.factory):
            if self.needs_training:
                raise RuntimeError(f"{self.folder}: the {self.factory} index must be trained "
                                   "first (PartedIndex.train(sample of embeddings))")
            return faiss.read_index(str(self.folder / TRAINED))
        return faiss.index_factory(self.dim, f"IDMap2,{self.factory}", faiss.METRIC_INNER_PRODUCT)

    def train(self, sample: np.ndarray) -> None:
        """Train the approximate index on ``sample`` and save it once."""
        if not self.needs_training:
            return
        on = _gpu(faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT))
        on.train(np.ascontiguousarray(sample, dtype=np.float32))
        with atomic_path(self.folder / TRAINED, suffix=".faiss") as tmp:
            faiss.write_index(_cpu(on), str(tmp))

    def add_part(self, part: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                 source: Mapping | None = None, key: str = "") -> bool:
        """Index one part from ``(embeddings, row keys)`` chunks and commit it (file, then its
        ``Marker`` holding ``key``); False (``chunks`` unread) when it is in under ``key``."""
        part = int(part)
        name = _part_name(part)
        marker = Marker(self.folder / f"{name}.json", key, self.folder / f"{name}.faiss")
        if marker.current():
            return False
        index = _gpu(self._empty())
        n = 0
        for emb, keys in chunks:
            emb = np.ascontiguousarray(emb, dtype=np.float32)
            keys = np.ascontiguousarray(keys, dtype=np.int64)
            if emb.ndim != 2 or emb.shape[1] != self.dim:
                raise ValueError(f"part {part}: embeddings of shape {emb.shape}, the index is "
                                 f"{self.dim}-d")
            if len(keys) != len(emb):
                raise ValueError(f"part {part}: {len(keys)} keys for {len(emb)} embeddings")
            if len(emb):
                index.add_with_ids(emb, keys)
            n += len(emb)
        dest = self.folder / f"{name}.faiss"
        with atomic_path(dest, suffix=".faiss") as tmp:
            faiss.write_index(_cpu(index), str(tmp))
        marker.done(part=part, rows=n, file=dest.name, bytes=dest.stat().st_size,
                    **dict(source or {}))
        return True

    def search(self, queries: np.ndarray, k: int = 1, batch_size: int = 16_384,
               parts: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest captions over ``parts`` (default all), merged by similarity then key:
        (keys [n, k], similarities [n, k]), a missing neighbour -1 / NaN."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries have shape {q.shape}, index is {self.dim}-d")
        rec = self.records()
        use = sorted(rec) if parts is None else sorted(int(p) for p in parts)
        missing = [p for p in use if p not in rec]
        if missing:
            raise KeyError(f"{self.folder}: parts {missing} are not indexed (have {sorted(rec)})")
        keys = np.full((len(q), k), -1, dtype=np.int64)
        sims = np.full((len(q), k), -np.inf, dtype=np.float32)
        big = np.iinfo(np.int64).max
        for p in use:
            one = _gpu(faiss.read_index(str(self.folder / rec[p]["file"])))
            if n_lists(self.factory):
                faiss.extract_index_ivf(one).nprobe = self.nprobe
            for s in range(0, len(q), batch_size):
                e = slice(s, s + batch_size)
                d, i = one.search(q[e], k)
                ck = np.concatenate([keys[e], i], axis=1)
                cs = np.concatenate([sims[e], np.where(i >= 0, d, -np.inf)], axis=1)
                order = np.lexsort((np.where(ck >= 0, ck, big), -cs), axis=1)[:, :k]
                keys[e] = np.take_along_axis(ck, order, axis=1)
                sims[e] = np.take_along_axis(cs, order, axis=1)
            del one
        sims = np.where(keys >= 0, sims, np.nan).astype(np.float32)
        return keys, sims


def _part_chunks(path: str | os.PathLike, part: int, chunk_rows: int,
                 rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, list]]:
    """(row keys, captions) of a LAION part (``rows``: only those), ``chunk_rows`` at a time."""
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=["TEXT"]):
        n = batch.num_rows
        text = batch.column(0)
        if rows is None:
            yield row_key(part, np.arange(start, start + n)), text.to_pylist()
        else:
            sel = rows[(rows >= start) & (rows < start + n)] - start
            if len(sel):
                yield row_key(part, sel + start), text.take(sel).to_pylist()
        start += n


def _embed(encoder: Any, keys: np.ndarray, texts: list, store: Any, batch_size: int) -> np.ndarray:
    if not len(texts):
        return np.zeros((0, encoder.dim), np.float32)
    if store is not None:
        return embed_with_store(encoder, keys, texts, store, batch_size=batch_size)
    return np.asarray(encoder.embed_texts(texts, batch_size=batch_size), dtype=np.float32)


def train_sample(parts: Mapping[int, str | os.PathLike], n_rows: Mapping[int, int], size: int,
                 seed: int = 0) -> dict[int, np.ndarray]:
    """part -> sorted rows of a seeded sample of ``size`` rows, spread by the parts' sizes."""
    total = sum(n_rows.values())
    size = min(int(size), total)
    order = sorted(parts)
    want = {p: size * n_rows[p] // total if total else 0 for p in order}
    for p in order[:size - sum(want.values())]:  # the remainder, one row each, to the first parts
        want[p] += 1
    rng = np.random.default_rng(seed)
    return {p: np.sort(rng.choice(n_rows[p], size=want[p], replace=False)).astype(np.int64)
            for p in order}


def index_parts(parts: Mapping[int, str | os.PathLike], encoder: Any, folder: str | os.PathLike,
                *, factory: str = "", n_total: int | None = None, train_size: int = 0,
                chunk_rows: int = 65_536, batch_size: int = 64, keep_embeddings: bool = False,
                store: Any = None, nprobe: int = 32, seed: int = 0,
                progress: bool = False) -> PartedIndex:
    """Index every caption of ``parts`` into ``folder`` part by part (an approximate index first
    trained on ``train_size`` captions), resuming after the last finished part.
    ``keep_embeddings``: every caption's embedding kept in ``store`` (850 GB for LAION-400M)."""
    if keep_embeddings and store is None:
        raise ValueError("index_parts: keep_embeddings=True needs a store (an EmbeddingStore)")
    use_store = store if keep_embeddings else None
    n_rows = part_rows(parts)
    factory = factory or suggest_factory(n_total or sum(n_rows.values()), encoder.dim)
    index = PartedIndex.open(folder, encoder.dim, factory, nprobe=nprobe)
    if index.needs_training:
        size = train_size or auto_train_size(factory, sum(n_rows.values()))
        rows = train_sample(parts, n_rows, size, seed)
        sample = [_embed(encoder, k, t, use_store, batch_size)
                  for p in sorted(parts) for k, t in _part_chunks(parts[p], p, chunk_rows, rows[p])]
        index.train(np.concatenate(sample) if sample else np.zeros((0, encoder.dim), np.float32))
        del sample
    for part, f in sorted(parts.items()):
        src = {"source": Path(f).name, "source_rows": n_rows[int(part)]}
        # what made the part: its file (name, rows, size), encoder and factory (a part file
        # copied elsewhere keeps its index; a changed one is indexed again)
        key = fingerprint({**src, "bytes": Path(f).stat().st_size, "encoder": encoder.name,
                           "factory": factory, "dim": encoder.dim})

        def chunks(f=f, part=int(part)):  # read only when add_part finds the part not current
            for k, t in tqdm(_part_chunks(f, part, chunk_rows), desc=f"index part {part}",
                             total=math.ceil(n_rows[part] / chunk_rows), disable=not progress):
                yield _embed(encoder, k, t, use_store, batch_size), k

        index.add_part(int(part), chunks(), src, key)
    return index


def _laion_column(keys: np.ndarray, parts: Mapping[int, str | os.PathLike], column: str) -> list:
    """``column`` of the LAION rows ``keys`` (int64), read from their parts."""
    part, row = split_key(keys)
    table = pa.table({"key": keys, "part": part, "row": row})
    return join_laion_columns(table, {int(p): Path(f) for p, f in parts.items()},
                              [column]).column(column).to_pylist()


def caption_embeddings(keys: Sequence[int], parts: Mapping[int, str | os.PathLike], encoder: Any,
                       store: Any = None, batch_size: int = 64) -> np.ndarray:
    """Full-precision caption embeddings of LAION row ``keys`` (their TEXT read from ``parts``),
    through ``store`` when given (captions embedded before are read back)."""
    key = np.asarray(keys, dtype=np.int64)
    return _embed(encoder, key, _laion_column(key, parts, "TEXT"), store, batch_size)


def rows_to_download(sample: pd.DataFrame, parts: Mapping[int, str | os.PathLike]) -> pd.DataFrame:
    """key, wnid, URL of each distinct row of ``sample`` by key: ``download_laionet``'s input."""
    rows = sample.drop_duplicates("key").sort_values("key", kind="stable")
    key = rows["key"].to_numpy(np.int64)
    return pd.DataFrame({"key": key, "wnid": rows["wnid"].to_numpy(),
                         "URL": _laion_column(key, parts, "URL")})
