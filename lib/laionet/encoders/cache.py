"""An append-only, on-disk embedding cache keyed by int64 row keys, one folder per encoder.

Layout under ``<root>/<encoder name>/``:
    meta.json                    encoder name, dim, dtype
    <shard>.emb.npy              embeddings [n, dim] (float32 by default; float16 on request)
    <shard>.keys.npy             the n int64 row keys of those rows (written last: the commit mark)

float32 is the default because similarities decide a strict threshold: float16 storage (half
the disk, 21 GB instead of 43 GB for LAION's 21M matched captions at 512 d) moves cosines by up
to ~1e-3 and can flip rows sitting at the threshold. An existing cache keeps its own dtype.

Shards are content-addressed (named by their keys), so writing the same keys twice is idempotent,
several workers can add shards side by side, and a crash leaves at most a stray temp file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_path, read_json, write_json
from .common import l2_normalize

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _safe_name(name: str) -> str:
    safe = _SAFE.sub("_", name).strip("._")
    if not safe:
        raise ValueError(f"encoder name {name!r} gives an empty cache folder name")
    return safe


class EmbeddingCache:
    """Embeddings of one encoder, looked up by row key; see the module docstring."""

    def __init__(self, root: str | os.PathLike, encoder_name: str, dtype: str = "float32"):
        self.encoder_name = encoder_name
        self.dir = Path(root) / _safe_name(encoder_name)
        self.dtype = np.dtype(dtype)
        self._shards: list[Path] = []
        self._shard_keys: list[np.ndarray] = []
        self._index_stale = True
        self._dim: int | None = None
        self.refresh()

    # -- reading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """(Re)scan the shard files; call it after another process added shards."""
        meta = self.dir / "meta.json"
        if meta.is_file():
            m = read_json(meta)
            if m.get("encoder") != self.encoder_name:
                raise ValueError(f"{meta}: cache of encoder {m.get('encoder')!r}, opened for "
                                 f"{self.encoder_name!r}; use another cache folder")
            self._dim = int(m["dim"])
            self.dtype = np.dtype(m["dtype"])
        self._shards = sorted(self.dir.glob("*.keys.npy"))
        self._shard_keys = [np.load(p).astype(np.int64, copy=False) for p in self._shards]
        self._index_stale = True

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted unique keys, shard of each, row in that shard), rebuilt lazily after adds."""
        if self._index_stale:
            parts = self._shard_keys
            keys = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            shard = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
            row = (np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts]) if parts
                   else np.zeros(0, np.int64))
            # Keep the first copy of a key written twice (identical embeddings by construction).
            uniq, first = np.unique(keys, return_index=True)
            self._idx = (uniq, shard[first], row[first])
            self._index_stale = False
        return self._idx

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return len(self._index()[0])

    def contains(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean mask: which ``keys`` are cached."""
        keys = np.asarray(keys, dtype=np.int64)
        cached = self._index()[0]
        if not len(cached):
            return np.zeros(len(keys), bool)
        pos = np.minimum(np.searchsorted(cached, keys), len(cached) - 1)
        return cached[pos] == keys

    def get(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 embeddings [len(keys), dim] aligned to ``keys``; every key must be cached."""
        keys = np.asarray(keys, dtype=np.int64)
        found = self.contains(keys)
        if not found.all():
            missing = keys[~found]
            raise KeyError(f"{self.dir}: {len(missing)} keys not cached (first: "
                           f"{missing[:5].tolist()}); embed them with embed_with_cache")
        out = np.zeros((len(keys), self._dim or 0), np.float32)
        cached, shards, rows = self._index()
        pos = np.searchsorted(cached, keys)
        shard, row = shards[pos], rows[pos]
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            emb = np.load(self._emb_path(self._shards[s]), mmap_mode="r")
            out[sel] = emb[row[sel]]
        return out

    # -- writing ---------------------------------------------------------------------------
    def add(self, keys: Sequence[int] | np.ndarray, embeddings: np.ndarray) -> Path | None:
        """Store one shard (atomically: embeddings first, then the keys file) and index it."""
        keys = np.asarray(keys, dtype=np.int64)
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(keys):
            raise ValueError(f"{self.dir}: {len(keys)} keys but embeddings of shape "
                             f"{embeddings.shape}")
        if len(np.unique(keys)) != len(keys):
            raise ValueError(f"{self.dir}: duplicate keys in one add(); deduplicate first")
        if not len(keys):
            return None
        self._check_meta(embeddings.shape[1])
        digest = hashlib.sha1(keys.tobytes()).hexdigest()[:16]
        keys_path = self.dir / f"{int(keys.min()):019d}-{len(keys)}-{digest}.keys.npy"
        if not keys_path.is_file():
            with atomic_path(self._emb_path(keys_path), suffix=".npy") as tmp:
                np.save(tmp, embeddings.astype(self.dtype))
            with atomic_path(keys_path, suffix=".npy") as tmp:
                np.save(tmp, keys)
        if keys_path not in self._shards:
            self._shards.append(keys_path)
            self._shard_keys.append(keys)
            self._index_stale = True
        return keys_path

    def _check_meta(self, dim: int) -> None:
        if self._dim is None:
            self._dim = dim
            write_json({"encoder": self.encoder_name, "dim": dim, "dtype": self.dtype.name},
                       self.dir / "meta.json")
        elif dim != self._dim:
            raise ValueError(f"{self.dir}: cache holds dim {self._dim}, got embeddings of "
                             f"dim {dim} (another encoder? use its own cache)")

    @staticmethod
    def _emb_path(keys_path: Path) -> Path:
        return keys_path.with_name(keys_path.name.replace(".keys.npy", ".emb.npy"))

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.dir)!r}, n={len(self)}, dim={self._dim})"


def _take(texts: Any, idx: np.ndarray) -> list[Any]:
    """texts[idx] for a list, numpy array or pyarrow (Chunked)Array."""
    if hasattr(texts, "take") and hasattr(texts, "to_pylist"):
        return texts.take(idx).to_pylist()
    return np.asarray(texts, dtype=object)[idx].tolist()


def embed_with_cache(encoder: Any, keys: Sequence[int] | np.ndarray, texts: Any,
                     cache: EmbeddingCache, batch_size: int = 64, shard_size: int = 65_536,
                     progress: bool = False) -> np.ndarray:
    """Embeddings of ``texts`` aligned to ``keys``, embedding only the keys not cached yet.

    New embeddings are written in shards of ``shard_size`` rows, so an interrupted run resumes
    where it stopped. Repeated keys are embedded once (their text is taken from the first row).
    """
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) != len(texts):
        raise ValueError(f"embed_with_cache: {len(keys)} keys but {len(texts)} texts")
    if cache.encoder_name != encoder.name:
        raise ValueError(f"embed_with_cache: cache {cache.dir} is for {cache.encoder_name!r}, "
                         f"encoder is {encoder.name!r}")
    todo = np.flatnonzero(~cache.contains(keys))
    _, first = np.unique(keys[todo], return_index=True)
    todo = todo[np.sort(first)]
    for start in range(0, len(todo), shard_size):
        idx = todo[start:start + shard_size]
        emb = encoder.embed_texts(_take(texts, idx), batch_size=batch_size, progress=progress)
        cache.add(keys[idx], emb)
    return l2_normalize(cache.get(keys)) if len(keys) else np.zeros((0, cache.dim or 0),
                                                                    np.float32)
