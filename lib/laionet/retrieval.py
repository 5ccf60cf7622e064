"""§4.4: ImageNet recreated by searching LAION with ImageNet's captions (paper_spec A19, B18, C.6).

A faiss inner-product index over L2-normalised LAION caption embeddings (so scores are cosine
similarities), keyed by the global row key (``laionet.keys.row_key``: part * KEY_STRIDE + row).
Each ImageNet-Captions caption is a query (k = 1); the retrieved LAION row gets the caption's
class; rows whose caption-to-caption similarity passes a threshold (0.7 in the paper) form the
"LAION | ImageNet texts" dataset.

The index is exact (``Flat``) on small data and approximate (``IVF...,PQ...`` or ``HNSW``) at
LAION scale. It is built part by part: ``add_part`` records which LAION parts are in, ``save``
commits atomically (index file first, then the ``meta.json`` that names it), so an interrupted
build resumes from the last saved part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import atomic_path, read_json, write_json

META = "meta.json"
#: The paper's B18 sweep of the caption-to-caption threshold.
PAPER_SWEEP = tuple(float(t) for t in np.round(np.linspace(0.5, 0.75, 20), 4))


def suggest_factory(n_vectors: int, dim: int) -> str:
    """Exact search up to 200k vectors; IVF-PQ beyond (about 4 sqrt(n) lists, 8-d sub-vectors).

    For LAION-400M (4e8 x 512) this gives ``IVF65536,PQ64``, ~26 GB of codes; the authors'
    autofaiss index was 16 GB. Pass your own factory string to trade memory for recall.
    """
    if n_vectors <= 200_000:
        return "Flat"
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(n_vectors))))
    m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if dim % m == 0)
    return f"IVF{nlist},PQ{m}"


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


def label_retrieved(query_ids: Sequence, query_wnids: Sequence, keys: np.ndarray,
                    sims: np.ndarray) -> pd.DataFrame:
    """One row per (query, neighbour): image_key, wnid (the query caption's class), key, similarity.

    As the authors did, no substring check and no multi-label drop: a LAION row retrieved by
    captions of two classes belongs to both. Missing neighbours (key -1) are dropped.
    """
    keys = np.asarray(keys).reshape(len(query_ids), -1)
    sims = np.asarray(sims).reshape(len(query_ids), -1)
    k = keys.shape[1]
    out = pd.DataFrame({"image_key": np.repeat(np.asarray(query_ids), k),
                        "wnid": np.repeat(np.asarray(query_wnids), k),
                        "key": keys.ravel(), "similarity": sims.ravel()})
    return out[out["key"] >= 0].reset_index(drop=True)


def retrieved_dataset(labelled: pd.DataFrame, threshold: float,
                      inclusive: bool = False) -> pd.DataFrame:
    """The LAION rows per class whose caption-to-caption similarity passes ``threshold``.

    A (class, row) pair retrieved by several captions is kept once (the authors'
    ``list(set(...))``) and passes when its best caption does (similarity = the maximum).
    Columns: wnid, key, similarity, n_queries. Strict ``>`` by default, as the paper.
    """
    g = labelled.groupby(["wnid", "key"], sort=True).agg(similarity=("similarity", "max"),
                                                         n_queries=("image_key", "size"))
    g = g.reset_index()
    keep = g["similarity"] >= threshold if inclusive else g["similarity"] > threshold
    return g[keep].reset_index(drop=True)


def threshold_sweep(labelled: pd.DataFrame, thresholds: Sequence[float],
                    compare: Callable[[pd.DataFrame], pd.DataFrame],
                    inclusive: bool = False) -> pd.DataFrame:
    """B18 sweep: for each caption-to-caption threshold, the classes kept and the per-class
    comparison with ImageNet.

    ``compare(kept)`` gets ``retrieved_dataset(labelled, t)`` and returns one row per class in
    the shape of ``laionet.similarity.compare_classes``: boolean columns ``tested``,
    ``significantly_lower`` and ``significantly_higher`` (vs ImageNet).
    Columns: threshold, n_rows, n_classes, n_tested, share_lower, share_higher.
    """
    rows = []
    for t in thresholds:
        kept = retrieved_dataset(labelled, t, inclusive)
        res = compare(kept)
        tested = res[res["tested"].astype(bool)]
        n_tested = len(tested)
        shares = {f"share_{side}": float(tested[f"significantly_{side}"].mean()) if n_tested
                  else float("nan") for side in ("lower", "higher")}
        rows.append({"threshold": float(t), "n_rows": int(kept["key"].nunique()),
                     "n_classes": int(kept["wnid"].nunique()), "n_tested": n_tested, **shares})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Building the caption index from the LAION parts
# --------------------------------------------------------------------------------------------

def build_index(parts: Mapping[int, str | os.PathLike], encoder: Any, store: Any,
                folder: str | os.PathLike, factory: str = "", nprobe: int = 32,
                batch_size: int = 64) -> TextIndex:
    """The index of every caption of ``parts`` (part number -> parquet file with ``TEXT``),
    built part by part and saved after each, so a rerun resumes after the last saved part.

    Captions are embedded through ``store`` (an ``EmbeddingStore`` of ``encoder``, keyed by
    row key and caption: captions another stage embedded are not embedded again). ``factory``
    empty: ``suggest_factory`` for the total caption count. An approximate index is trained on
    the first part it adds. Raises when the saved index does not hold every caption (a folder
    left by other parts).
    """
    import pyarrow.parquet as pq

    from .embedding_store import embed_with_store
    from .keys import row_key

    n_rows = {int(p): pq.ParquetFile(f).metadata.num_rows for p, f in parts.items()}
    factory = factory or suggest_factory(sum(n_rows.values()), encoder.dim)
    Path(folder).mkdir(parents=True, exist_ok=True)
    index = TextIndex.open(folder, encoder.dim, factory, nprobe=nprobe)
    for part, f in sorted(parts.items()):
        if int(part) in index.parts:
            continue
        text = pq.read_table(f, columns=["TEXT"]).column("TEXT")
        keys = row_key(int(part), np.arange(len(text)))
        emb = embed_with_store(encoder, keys, text, store, batch_size=batch_size)
        if len(emb):
            index.train(emb)  # IVF-PQ: trained on the first part (a no-op once trained, or Flat)
        index.add_part(part, emb, keys)
        index.save(folder)
    if index.ntotal != sum(n_rows.values()) or not index.parts >= set(n_rows):
        raise RuntimeError(f"{folder}: holds {index.ntotal} captions of parts {sorted(index.parts)}, "
                           f"the LAION parts have {sum(n_rows.values())} in parts {sorted(n_rows)}; "
                           "delete the folder and rerun")
    return index


# --------------------------------------------------------------------------------------------
# The retrieved rows' images and their comparison with ImageNet
# --------------------------------------------------------------------------------------------

def sample_retrieved(retrieved: pd.DataFrame, n_per_class: int = 100, seed: int = 0) -> pd.DataFrame:
    """Up to ``n_per_class`` seeded (class, row) pairs per class of ``retrieved_dataset``'s
    table: a row retrieved for two classes is a candidate of both, so the pair is sampled."""
    from .similarity import sample_per_class

    pairs = retrieved.assign(pair=retrieved["wnid"] + ":" + retrieved["key"].astype(str))
    return sample_per_class(pairs, n_per_class, seed, key="pair").drop(columns="pair")


def rows_to_download(sample: pd.DataFrame, parts: Mapping[int, str | os.PathLike]) -> pd.DataFrame:
    """key, wnid (the first class of the row in ``sample``), URL (read from the LAION parts)
    of each distinct row of ``sample``, in key order: the input of ``download_laionet``."""
    import pyarrow as pa

    from .keys import split_key
    from .selection import join_laion_columns

    rows = sample.drop_duplicates("key").sort_values("key", kind="stable")
    key = rows["key"].to_numpy(np.int64)
    part, row = split_key(key)
    table = pa.table({"key": key, "part": part, "row": row})
    urls = join_laion_columns(table, dict(parts), ["URL"]).column("URL").to_pylist()
    return pd.DataFrame({"key": key, "wnid": rows["wnid"].to_numpy(), "URL": urls})


class ClassComparer:
    """The retrieved rows of each class vs a reference dataset's classes (ImageNet).

    ``by_class(kept)``: {wnid: embeddings} of the kept (class, row) pairs that have an image
    embedding (a row can serve two classes); calling it with ``kept`` gives
    ``similarity.compare_classes`` against the reference, the ``compare`` of
    ``threshold_sweep``.
    """

    def __init__(self, keys: Sequence, emb: np.ndarray, reference: Mapping[str, np.ndarray],
                 method: str = "bootstrap", min_pairs: int = 7, seed: int = 0):
        self.emb_by_key = dict(zip(np.asarray(keys).tolist(), emb))
        self.reference = reference
        self.method, self.min_pairs, self.seed = method, min_pairs, seed

    def by_class(self, kept: pd.DataFrame) -> dict[str, np.ndarray]:
        kept = kept[kept["key"].isin(set(self.emb_by_key))]
        return {w: np.stack([self.emb_by_key[x] for x in g["key"]]) for w, g in kept.groupby("wnid")}

    def __call__(self, kept: pd.DataFrame) -> pd.DataFrame:
        from .similarity import compare_classes

        return compare_classes(self.by_class(kept), self.reference, method=self.method,
                               min_pairs=self.min_pairs, seed=self.seed)
