"""§4.4's caption index: LAION's caption embeddings in a faiss index, one file per LAION part.

A faiss inner-product index over L2-normalised LAION caption embeddings (so scores are cosine
similarities), keyed by the global row key (``laionet.sources.laion.row_key``). The index is
exact (``Flat``) on small data and approximate (IVF-PQ, 40 bytes a caption) at LAION scale
(``suggest_factory``: the size rule). Stage 09 keeps it as one faiss file per LAION part
(``PartedIndex``, built by ``index_parts``): trained once on a sample drawn across the parts,
each part added chunk by chunk and committed once, a search merging the parts' top-k; a killed
build resumes after its last finished part. ``TextIndex`` is one in-memory faiss index (a part's).
The approximate index's scores are not the caption-to-caption similarity (PQ codes): the
retrieved pairs are re-scored exactly (``method.retrieval.exact_similarity`` with
``caption_embeddings``) before the threshold and the sweep.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from laionet.util.files import atomic_path, read_json, write_json
from laionet.sources.laion import join_laion_columns, row_key, split_key
from laionet.jobs.embedding_store import embed_with_store

META = "meta.json"

class TextIndex:
    """A faiss inner-product index of caption embeddings with int64 row keys and part records."""

    def __init__(self, index, factory: str, parts: Iterable[int] = (), nprobe: int = 32):
        self.index = index
        self.factory = factory
        self.parts: set[int] = {int(p) for p in parts}
        self.nprobe = nprobe

    # construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, factory: str = "Flat", nprobe: int = 32) -> TextIndex:
        """An empty index. ``factory`` is a faiss index_factory string (Flat, HNSW32,
        IVF4096,PQ64, ...); IVF indexes carry ids themselves, others get an IDMap2 wrapper."""
        import faiss

        native_ids = factory.upper().startswith("IVF")
        index = faiss.index_factory(int(dim), factory if native_ids else f"IDMap2,{factory}",
                                    faiss.METRIC_INNER_PRODUCT)
        return cls(index, factory, nprobe=nprobe)

    @classmethod
    def load(cls, folder: str | os.PathLike, nprobe: int = 32) -> TextIndex:
        import faiss

        folder = Path(folder)
        meta = read_json(folder / META)
        index = faiss.read_index(str(folder / meta["index_file"]))
        if index.ntotal != meta["ntotal"]:
            raise RuntimeError(f"{folder / meta['index_file']}: holds {index.ntotal} vectors but "
                               f"{folder / META} records {meta['ntotal']}; delete {folder} and "
                               "rebuild the index")
        return cls(index, meta["factory"], meta["parts"], nprobe=nprobe)

    @classmethod
    def open(cls, folder: str | os.PathLike, dim: int, factory: str = "Flat",
             nprobe: int = 32) -> TextIndex:
        """Load the index saved in ``folder`` (to resume), else create an empty one."""
        if (Path(folder) / META).is_file():
            idx = cls.load(folder, nprobe=nprobe)
            if idx.dim != dim or idx.factory != factory:
                raise ValueError(f"{folder}: saved index is {idx.factory} over {idx.dim}-d vectors, "
                                 f"asked for {factory} over {dim}-d; use another folder or delete it")
            return idx
        return cls.create(dim, factory, nprobe=nprobe)

    # properties ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    # building ------------------------------------------------------------------------------
    def train(self, sample: np.ndarray) -> None:
        """Train an approximate index (IVF/PQ) on a sample of embeddings; no-op for Flat/HNSW."""
        if self.needs_training:
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add_part(self, part: int, embeddings: np.ndarray, keys: np.ndarray) -> bool:
        """Add one LAION part's embeddings with their row keys. Returns False (and adds
        nothing) when the part is already in, so a resumed build never duplicates vectors."""
        part = int(part)
        if part in self.parts:
            return False
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"part {part}: embeddings have shape {emb.shape}, index is {self.dim}-d")
        if len(keys) != len(emb):
            raise ValueError(f"part {part}: {len(keys)} keys for {len(emb)} embeddings")
        if self.needs_training:
            raise RuntimeError(f"part {part}: the {self.factory} index must be trained first "
                               "(TextIndex.train(sample of embeddings))")
        if len(emb):
            self.index.add_with_ids(emb, keys)
        self.parts.add(part)
        return True

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index and meta.json atomically; older index files in ``folder`` are removed."""
        import faiss

        folder = Path(folder)
        name = f"index-{self.ntotal}-{len(self.parts)}.faiss"
        with atomic_path(folder / name, suffix=".faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        write_json({"factory": self.factory, "dim": self.dim, "ntotal": self.ntotal,
                    "parts": sorted(self.parts), "index_file": name}, folder / META)
        for old in folder.glob("index-*.faiss"):
            if old.name != name:
                old.unlink()
        return folder

    # querying ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1,
               batch_size: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest captions of each query: (keys int64 [n, k], similarities float32 [n, k]).

        Missing neighbours (k > ntotal) come back as key -1 and similarity NaN.
        """
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries have shape {q.shape}, index is {self.dim}-d")
        if self.factory.upper().startswith("IVF"):
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        keys = np.full((len(q), k), -1, dtype=np.int64)
        sims = np.full((len(q), k), np.nan, dtype=np.float32)
        for s in range(0, len(q), batch_size):
            d, i = self.index.search(q[s:s + batch_size], k)
            keys[s:s + batch_size] = i
            sims[s:s + batch_size] = np.where(i >= 0, d, np.nan)
        return keys, sims


# Layout of an index folder (``PartedIndex``):
#   meta.json            factory, dim (written once, when the folder is made)
#   trained.faiss        the trained, empty approximate index (IVF-PQ): trained once on a sample
#                        drawn across the parts; absent for Flat
#   part-NNNNN.faiss     the part's captions (a copy of trained.faiss + that part's vectors),
#                        written once, atomically
#   part-NNNNN.json      its commit marker (rows, source file, bytes): written after the .faiss,
#                        so a part is either done (marker) or redone from scratch
# A finished part is never rewritten; a search visits the parts one at a time and merges their
# top-k (faiss ``merge_ondisk`` would give one IVF file, but only for IVF indexes and by
# rewriting every list: per-part files work for Flat too, and adding a part touches nothing
# done). Peak memory: one part's index + one chunk of ``chunk_rows`` caption embeddings.
# Cost of the layout: each part file repeats the trained quantizer (nlist x dim x 4 bytes:
# 134 MB at IVF65536 over 512-d, +4.3 GB over 32 parts, ~50 bytes a caption all in instead of
# 40; benchmarks/bench_index_bytes.py measures both).

TRAINED = "trained.faiss"
#: exact (Flat) search up to this many captions: 4 * dim + 8 bytes each (2 KB at 512-d; 200k
#: captions = 0.4 GB of index); beyond, IVF-PQ with PQ_BYTES bytes of code per caption.
FLAT_MAX = 200_000
PQ_BYTES = 32   # + 8 bytes of row key = 40 bytes per caption: the authors' 16 GB / 413.9M = 41


def suggest_factory(n_vectors: int, dim: int) -> str:
    """The size rule: exact ``Flat`` up to ``FLAT_MAX`` captions (inner products of the full
    float32 vectors, 4 * dim + 8 bytes a caption); beyond, ``IVF<nlist>,PQ32``: about
    4 sqrt(n) inverted lists (a power of two) and 32 one-byte codes per caption, i.e. 32 bytes of
    code + 8 of row key = 40 bytes a caption, as the authors' 16 GB index of 413.9M captions
    (41 bytes a caption). LAION-400M (4.1e8 x 512): ``IVF65536,PQ32``, about 16.6 GB. Pass your
    own factory string to trade memory for recall (``IVF65536,PQ64`` doubles the codes)."""
    if n_vectors <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(n_vectors))))
    m = PQ_BYTES if dim % PQ_BYTES == 0 else next(m for m in (dim // 8, dim // 4, dim // 2, dim)
                                                  if dim % m == 0)
    return f"IVF{nlist},PQ{m}"


def count_rows(parts: Mapping[int, str | os.PathLike]) -> int:
    """Rows of the LAION parts, from their parquet footers (nothing else is read)."""
    import pyarrow.parquet as pq

    return int(sum(pq.ParquetFile(f).metadata.num_rows for f in parts.values()))


def n_lists(factory: str) -> int:
    """The inverted-list count of an ``IVF<n>...`` factory string (0 for others)."""
    import re

    m = re.match(r"IVF(\d+)", factory.upper())
    return int(m.group(1)) if m else 0


def auto_train_size(factory: str, n_total: int) -> int:
    """Training sample of an approximate index: 40 vectors per inverted list (faiss warns below
    39), at least 2**16 (PQ codebooks: 256 centroids per sub-vector), at most every caption."""
    nl = n_lists(factory)
    return 0 if not nl else int(min(n_total, max(40 * nl, 2 ** 16)))


def _gpu(index):
    """``index`` on every GPU when GPU faiss is present (faiss.get_num_gpus() > 0), else itself;
    an index type the GPU code does not take (HNSW, IDMap2) stays on the CPU."""
    import faiss

    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        try:
            return faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError):
            return index
    return index


def _cpu(index):
    import faiss

    return faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") and \
        type(index).__name__.startswith("Gpu") else index


def _part_name(part: int) -> str:
    return f"part-{int(part):05d}"


class PartedIndex:
    """A caption index kept as one faiss file per LAION part (see the layout above)."""

    def __init__(self, folder: str | os.PathLike, factory: str, dim: int, nprobe: int = 32):
        self.folder = Path(folder)
        self.factory, self._dim, self.nprobe = factory, int(dim), nprobe

    @classmethod
    def open(cls, folder: str | os.PathLike, dim: int, factory: str = "Flat",
             nprobe: int = 32) -> PartedIndex:
        """The index in ``folder`` (made when missing); raises when it holds another factory/dim."""
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

    # what is in ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    def records(self) -> dict[int, dict]:
        """part -> its marker (rows, file, bytes, source) of every finished part."""
        out = {}
        for f in sorted(self.folder.glob("part-*.json")):
            r = read_json(f)
            out[int(r["part"])] = r
        return out

    @property
    def parts(self) -> set[int]:
        return set(self.records())

    @property
    def ntotal(self) -> int:
        return int(sum(r["rows"] for r in self.records().values()))

    def bytes_per_caption(self) -> float:
        """Bytes on disk (every part file) per caption indexed."""
        rec = self.records().values()
        n = sum(r["rows"] for r in rec)
        return sum(r["bytes"] for r in rec) / n if n else float("nan")

    @property
    def needs_training(self) -> bool:
        return n_lists(self.factory) > 0 and not (self.folder / TRAINED).is_file()

    # building -----------------------------------------------------------------------------
    def _empty(self):
        """A fresh empty index of this factory: the trained one for IVF, else Flat + ids."""
        import faiss

        if n_lists(self.factory):
            if self.needs_training:
                raise RuntimeError(f"{self.folder}: the {self.factory} index must be trained "
                                   "first (PartedIndex.train(sample of embeddings))")
            return faiss.read_index(str(self.folder / TRAINED))
        return TextIndex.create(self.dim, self.factory).index

    def train(self, sample: np.ndarray) -> None:
        """Train the approximate index on ``sample`` (GPU when present) and save it once."""
        import faiss

        if not self.needs_training:
            return
        index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        x = np.ascontiguousarray(sample, dtype=np.float32)
        on = _gpu(index)
        on.train(x)
        with atomic_path(self.folder / TRAINED, suffix=".faiss") as tmp:
            faiss.write_index(_cpu(on), str(tmp))

    def add_part(self, part: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                 source: Mapping | None = None) -> bool:
        """Index one part from ``(embeddings, row keys)`` chunks and commit it (file, then
        marker). False (nothing read from ``chunks``) when the part is already in."""
        import faiss

        part = int(part)
        name = _part_name(part)
        if (self.folder / f"{name}.json").is_file():
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
        write_json({"part": part, "rows": n, "file": dest.name, "bytes": dest.stat().st_size,
                    **dict(source or {})}, self.folder / f"{name}.json")
        return True

    # querying -----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1, batch_size: int = 16_384,
               parts: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest captions of each query over ``parts`` (default: every finished part):
        each part's index is loaded alone and searched, and the top-k are merged (similarity
        descending, then row key). (keys int64 [n, k], similarities float32 [n, k]); missing
        neighbours are key -1, similarity NaN."""
        import faiss

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
        for p in use:
            one = TextIndex(_gpu(faiss.read_index(str(self.folder / rec[p]["file"]))),
                            self.factory, nprobe=self.nprobe)
            pk, ps = one.search(q, k, batch_size)
            ck = np.concatenate([keys, pk], axis=1)
            cs = np.concatenate([sims, np.where(pk >= 0, ps, -np.inf)], axis=1)
            big = np.iinfo(np.int64).max
            order = np.lexsort((np.where(ck >= 0, ck, big), -cs), axis=1)[:, :k]
            keys = np.take_along_axis(ck, order, axis=1)
            sims = np.take_along_axis(cs, order, axis=1)
            del one
        sims = np.where(keys >= 0, sims, np.nan).astype(np.float32)
        return keys, sims


def _part_chunks(path: str | os.PathLike, part: int, chunk_rows: int,
                 rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, list]]:
    """(row keys, captions) of a LAION part, ``chunk_rows`` rows at a time (only TEXT is read);
    ``rows``: only those (sorted row numbers)."""
    import pyarrow.parquet as pq

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
    """part -> sorted row numbers of a seeded sample of ``size`` rows spread over the parts in
    proportion to their rows (the training set of an approximate index)."""
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
    """Index every caption of ``parts`` (part number -> parquet with ``TEXT``) into ``folder``,
    one part at a time, resuming after the last finished part.

    ``factory`` empty: ``suggest_factory(n_total or the parts' rows, encoder.dim)``. An
    approximate index is first trained on ``train_size`` captions sampled across the parts
    (0: ``auto_train_size``). Each part is read, embedded and added ``chunk_rows`` captions at a
    time, so memory holds one chunk of embeddings plus the part's index, never a part's
    embeddings. ``keep_embeddings``: also keep every caption's float32 embedding in ``store``
    (an ``EmbeddingStore``; 2 KB a caption at 512-d, 850 GB for LAION-400M), reusing what is
    there; off by default: the index alone is kept and the few retrieved captions are embedded
    again for the exact scores (``caption_embeddings``).
    """
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    if keep_embeddings and store is None:
        raise ValueError("index_parts: keep_embeddings=True needs a store (an EmbeddingStore)")
    use_store = store if keep_embeddings else None
    n_rows = {int(p): pq.ParquetFile(f).metadata.num_rows for p, f in parts.items()}
    factory = factory or suggest_factory(n_total or sum(n_rows.values()), encoder.dim)
    index = PartedIndex.open(folder, encoder.dim, factory, nprobe=nprobe)
    if index.needs_training:
        size = train_size or auto_train_size(factory, sum(n_rows.values()))
        rows = train_sample(parts, n_rows, size, seed)
        sample = [_embed(encoder, k, t, use_store, batch_size)
                  for p in sorted(parts) for k, t in _part_chunks(parts[p], p, chunk_rows, rows[p])]
        index.train(np.concatenate(sample) if sample else np.zeros((0, encoder.dim), np.float32))
        del sample
    done = index.records()
    for part, f in sorted(parts.items()):
        src = {"source": Path(f).name, "source_rows": n_rows[int(part)]}
        if int(part) in done:
            r = done[int(part)]
            if (r.get("source"), r.get("source_rows")) != (src["source"], src["source_rows"]):
                raise RuntimeError(
                    f"{folder}: part {part} was indexed from {r.get('source')} "
                    f"({r.get('source_rows')} rows), now {src['source']} ({src['source_rows']} "
                    f"rows); delete {_part_name(part)}.json and .faiss there to redo it")
            continue
        chunks = ((_embed(encoder, k, t, use_store, batch_size), k)
                  for k, t in tqdm(_part_chunks(f, int(part), chunk_rows),
                                   total=math.ceil(n_rows[int(part)] / chunk_rows),
                                   desc=f"index part {part}", disable=not progress))
        index.add_part(int(part), chunks, src)
    return index


def caption_embeddings(keys: Sequence[int], parts: Mapping[int, str | os.PathLike], encoder: Any,
                       store: Any = None, batch_size: int = 64) -> np.ndarray:
    """Full-precision caption embeddings of LAION row ``keys`` (aligned; through ``store`` when
    given, so captions embedded before are read back): the TEXT of just these rows is read."""
    import pyarrow as pa

    key = np.asarray(keys, dtype=np.int64)
    if not len(key):
        return np.zeros((0, encoder.dim), np.float32)
    part, row = split_key(key)
    text = join_laion_columns(pa.table({"key": key, "part": part, "row": row}),
                              {int(p): Path(f) for p, f in parts.items()}, ["TEXT"])
    return _embed(encoder, key, text.column("TEXT").to_pylist(), store, batch_size)


def rows_to_download(sample: pd.DataFrame, parts: Mapping[int, str | os.PathLike]) -> pd.DataFrame:
    """key, wnid (the first class of the row in ``sample``), URL (read from the LAION parts)
    of each distinct row of ``sample``, in key order: the input of ``download_laionet``."""
    import pyarrow as pa

    rows = sample.drop_duplicates("key").sort_values("key", kind="stable")
    key = rows["key"].to_numpy(np.int64)
    part, row = split_key(key)
    table = pa.table({"key": key, "part": part, "row": row})
    urls = join_laion_columns(table, dict(parts), ["URL"]).column("URL").to_pylist()
    return pd.DataFrame({"key": key, "wnid": rows["wnid"].to_numpy(), "URL": urls})
