"""§4.4: ImageNet recreated by searching LAION with ImageNet's captions (paper_spec A19, B18, C.6).

A faiss inner-product index over L2-normalised LAION caption embeddings (so scores are cosine
similarities), keyed by the global row key ``part * 100_000_000 + row``. Each ImageNet-Captions
caption is a query (k = 1); the retrieved LAION row gets the caption's class; rows whose
caption-to-caption similarity passes a threshold (0.7 in the paper) form the "LAION | ImageNet
texts" dataset.

The index is exact (``Flat``) on small data and approximate (``IVF...,PQ...`` or ``HNSW``) at
LAION scale. It is built part by part: ``add_part`` records which LAION parts are in, ``save``
commits atomically (index file first, then the ``meta.json`` that names it), so an interrupted
build resumes from the last saved part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, read_json, write_json

META = "meta.json"


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
