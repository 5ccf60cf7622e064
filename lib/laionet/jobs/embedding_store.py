"""One on-disk embedding store for captions and images, keyed by row key AND content.

A store is one folder per (kind, dataset, encoder): ``meta.json`` and shards ``.emb.npy``
(float32 by default: float16 moves cosines by up to ~1e-3) + ``.keys.parquet`` (key, content
hash; written last: the shard's commit).

What is current: an entry is found only when its key and its content (``content_hash`` of the
caption or image bytes) both match, in its encoder's folder; batch sizes and workers play no
part. Adding writes one shard (named by a digest of its entries: idempotent, processes side by
side); a lookup loads only the shards whose key range can hold the keys (memory: one LAION part).
"""

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.models.common import clean_texts
from laionet.util.files import atomic_path, read_json, write_json, write_parquet

NO_CONTENT = 0  # the content of entries added without one (found only by lookups without one)


def content_hash(value: str | bytes) -> int:
    """A 63-bit content key (> 0) of a caption (UTF-8) or of an image file's bytes."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1 or 1


def content_hashes(values: Sequence[Any]) -> np.ndarray:
    """``content_hash`` of each value, as int64."""
    return np.fromiter((content_hash(v) for v in values), dtype=np.int64, count=len(values))


def safe_name(name: str) -> str:
    """A folder name of a dataset or encoder name, the rule of ``Stage.cache_dir``."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(name))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _repeated(keys: np.ndarray, contents: np.ndarray) -> np.ndarray:
    """True where a (key, content) pair already occurred earlier in the arrays."""
    return pd.DataFrame({"k": keys, "c": contents}).duplicated().to_numpy()


class EmbeddingStore:
    """Embeddings of one encoder for one dataset; see the module docstring."""

    def __init__(self, folder: str | os.PathLike, encoder_name: str, dtype: str = "float32"):
        self.dir = Path(folder)
        self.encoder_name = encoder_name
        self.dtype = np.dtype(dtype)
        self.dim: int | None = None
        self._key_type: str | None = None
        self.refresh()

    @classmethod
    def at(cls, root: str | os.PathLike, dataset: str, encoder_name: str,
           dtype: str = "float32") -> "EmbeddingStore":
        """The store of ``dataset`` under a cache root (``Stage.cache_dir(kind, dataset, enc)``)."""
        return cls(Path(root) / safe_name(dataset) / safe_name(encoder_name), encoder_name, dtype)

    def refresh(self) -> None:
        """(Re)scan the shards; call it after another process added some."""
        meta = self.dir / "meta.json"
        m = read_json(meta) if meta.is_file() else {}
        if m and m.get("encoder") != self.encoder_name:
            raise ValueError(f"{meta}: store of encoder {m.get('encoder')!r}, opened for "
                             f"{self.encoder_name!r}; use another folder")
        # older caches (meta.json without key_type, *.keys.npy, part-*.keys.parquet) are ignored
        if "key_type" in m:
            self.dim, self.dtype = int(m["dim"]), np.dtype(m["dtype"])
            self._key_type = m["key_type"]
        self._shards = sorted(self.dir.glob("[0-9]*-*.keys.parquet"))
        self._ranges = [self._key_range(p) for p in self._shards]
        self._parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._idx_sel: tuple[int, ...] | None = None

    @staticmethod
    def _key_range(path: Path) -> tuple[int, int] | None:
        """(min, max) of an integer-keyed shard from its parquet footer (no data read)."""
        try:
            md = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException):
            return None
        st = [md.row_group(g).column(0).statistics for g in range(md.num_row_groups)]
        if not st or not all(s is not None and s.has_min_max and isinstance(s.min, int)
                             for s in st):
            return None
        return min(int(s.min) for s in st), max(int(s.max) for s in st)

    @staticmethod
    def _read_keys(path: Path) -> tuple[np.ndarray, np.ndarray]:
        """A shard's keys and contents."""
        t = pq.read_table(path)
        key = t.column("key").to_numpy(zero_copy_only=False)
        key = key.astype(object) if key.dtype.kind not in "iu" else key.astype(np.int64)
        return key, t.column("content").to_numpy().astype(np.int64)

    @staticmethod
    def _key_hash(keys: np.ndarray) -> np.ndarray:  # the shard digest's order
        if keys.dtype.kind in "iu":
            return keys.astype(np.int64).view(np.uint64)
        return content_hashes([str(k) for k in keys]).view(np.uint64)

    def _select(self, keys: np.ndarray | None) -> tuple[int, ...]:
        """The shards that may hold ``keys`` (integer keys: by key range; else every shard)."""
        if keys is None or not len(keys) or keys.dtype.kind not in "iu":
            return tuple(range(len(self._shards)))
        lo, hi = int(keys.min()), int(keys.max())
        return tuple(i for i, r in enumerate(self._ranges)
                     if r is None or (r[0] <= hi and r[1] >= lo))

    def _index(self, sel: tuple[int, ...] | None = None):
        """The entries of the shards ``sel`` (default all; only theirs kept in memory): a unique
        (key, content) index (the first copy written wins), each one's shard and row."""
        sel = tuple(range(len(self._shards))) if sel is None else sel
        if sel != self._idx_sel:
            self._parts = {i: self._parts[i] if i in self._parts else
                           self._read_keys(self._shards[i]) for i in sel}
            parts = [self._parts[i] for i in sel] or [(np.zeros(0, np.int64),) * 2]
            index = pd.MultiIndex.from_arrays([np.concatenate([p[i] for p in parts])
                                               for i in (0, 1)])
            shard = np.repeat(np.asarray(sel, np.int64), [len(p[1]) for p in parts][:len(sel)])
            row = np.concatenate([np.arange(len(p[1])) for p in parts])
            first = ~index.duplicated()
            self._idx, self._idx_sel = (index[first], shard[first], row[first]), sel
        return self._idx

    def _as_keys(self, keys: Sequence) -> np.ndarray:
        arr = np.asarray(keys)
        if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f"):
            return arr.astype(np.int64)
        if arr.dtype.kind in "fcb":
            raise TypeError(f"{self.dir}: keys must be integers or strings, got {arr.dtype}")
        return np.asarray([str(k) for k in keys], dtype=object)

    def _contents(self, n: int, contents: Sequence[int] | None) -> np.ndarray:
        c = np.full(n, NO_CONTENT, np.int64) if contents is None else np.asarray(contents, np.int64)
        if c.shape != (n,):
            raise ValueError(f"{self.dir}: {n} keys but {len(c)} contents")
        return c

    def _find(self, keys: Sequence, contents: Sequence[int] | None) -> tuple[np.ndarray, ...]:
        """The keys, and the position of each (key, content) in the index (-1: not stored) with
        the shard and row of each."""
        k = self._as_keys(keys)
        c = self._contents(len(k), contents)
        index, shard, row = self._index(self._select(k))
        pos = (index.get_indexer(pd.MultiIndex.from_arrays([k, c]))
               if len(index) and len(k) else np.full(len(k), -1, np.int64))
        return k, pos, shard, row

    def __len__(self) -> int:
        """The number of distinct (key, content) entries."""
        return len(self._index()[0])

    def contains(self, keys: Sequence, contents: Sequence[int] | None = None) -> np.ndarray:
        """Boolean mask: which (key, content) entries are stored."""
        return self._find(keys, contents)[1] >= 0

    def get(self, keys: Sequence, contents: Sequence[int] | None = None) -> np.ndarray:
        """Unit-norm float32 rows aligned to ``keys``; every entry must be stored."""
        k, pos, shard, row = self._find(keys, contents)
        if (pos < 0).any():
            raise KeyError(f"{self.dir}: {int((pos < 0).sum())} of {len(k)} entries not stored "
                           f"(first keys: {k[pos < 0][:5].tolist()}); embed them first")
        shard, row = shard[pos], row[pos]
        out = np.zeros((len(k), self.dim or 0), np.float32)
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            out[sel] = np.load(self._emb_path(self._shards[s]), mmap_mode="r")[row[sel]]
        return _unit(out)

    def add(self, keys: Sequence, embeddings: np.ndarray,
            contents: Sequence[int] | None = None) -> Path | None:
        """Store one shard: embeddings first, then the keys file (the commit mark)."""
        k = self._as_keys(keys)
        c = self._contents(len(k), contents)
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or len(emb) != len(k):
            raise ValueError(f"{self.dir}: {len(k)} keys but embeddings of shape {emb.shape}")
        if _repeated(k, c).any():
            raise ValueError(f"{self.dir}: the same (key, content) twice in one add(); "
                             "deduplicate first")
        if not len(k):
            return None
        self._check_meta(emb.shape[1], "int" if k.dtype.kind == "i" else "str")
        h = self._key_hash(k)
        order = np.lexsort((c, h))
        digest = hashlib.sha1(h[order].tobytes() + c[order].tobytes()).hexdigest()[:16]
        existing = [p for p in self._shards if p.name.endswith(f"-{digest}.keys.parquet")]
        if existing:
            return existing[0]
        keys_path = self.dir / f"{len(self._shards):06d}-{digest}.keys.parquet"
        with atomic_path(self._emb_path(keys_path), suffix=".npy") as tmp:
            np.save(tmp, emb.astype(self.dtype))
        write_parquet(pa.table({"key": pa.array(k.tolist() if k.dtype == object else k),
                                "content": pa.array(c, pa.int64())}), keys_path)
        self._shards.append(keys_path)
        self._ranges.append((int(k.min()), int(k.max())) if k.dtype.kind in "iu" else None)
        self._parts[len(self._shards) - 1] = (k, c)
        self._idx_sel = None  # the lookup index is rebuilt lazily
        return keys_path

    def _check_meta(self, dim: int, key_type: str) -> None:
        if self.dim is None:
            self.dim, self._key_type = dim, key_type
            write_json({"encoder": self.encoder_name, "dim": dim, "dtype": self.dtype.name,
                        "key_type": key_type}, self.dir / "meta.json")
        elif dim != self.dim:
            raise ValueError(f"{self.dir}: store holds dim {self.dim}, got dim {dim} "
                             "(another encoder? give it its own folder)")
        elif key_type != self._key_type:
            raise ValueError(f"{self.dir}: store keyed by {self._key_type} keys, got "
                             f"{key_type} keys")

    @staticmethod
    def _emb_path(keys_path: Path) -> Path:
        return keys_path.with_name(keys_path.name.replace(".keys.parquet", ".emb.npy"))

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.dir)!r}, n={len(self)}, dim={self.dim})"


def _take(texts: Any, idx: np.ndarray) -> list[Any]:
    """texts[idx] for a list, numpy array or pyarrow (Chunked)Array."""
    if hasattr(texts, "take") and hasattr(texts, "to_pylist"):
        return texts.take(idx).to_pylist()
    return np.asarray(texts, dtype=object)[idx].tolist()


def embed_with_store(encoder: Any, keys: Sequence, texts: Any, store: EmbeddingStore,
                     batch_size: int = 64, shard_size: int = 65_536,
                     progress: bool = False) -> np.ndarray:
    """Unit-norm embeddings of ``texts`` aligned to ``keys`` (row keys, or file names), embedding
    only (key, caption) pairs not stored yet (content: ``content_hash`` of the text the encoder
    sees; null: "None"), each once, in shards of ``shard_size`` rows (a killed run resumes)."""
    if len(keys) != len(texts):
        raise ValueError(f"embed_with_store: {len(keys)} keys but {len(texts)} texts")
    if store.encoder_name != encoder.name:
        raise ValueError(f"embed_with_store: store {store.dir} is for {store.encoder_name!r}, "
                         f"encoder is {encoder.name!r}")
    k = store._as_keys(keys)
    contents = content_hashes(clean_texts(texts))
    todo = np.flatnonzero(~store.contains(k, contents))
    todo = todo[~_repeated(k[todo], contents[todo])]
    for start in range(0, len(todo), shard_size):
        idx = todo[start:start + shard_size]
        emb = encoder.embed_texts(_take(texts, idx), batch_size=batch_size, progress=progress)
        store.add(k[idx], emb, contents[idx])
    return store.get(k, contents) if len(k) else np.zeros((0, store.dim or 0), np.float32)


def embed_captions(encoder, captions: pd.DataFrame, store, batch_size: int = 64) -> np.ndarray:
    """Embeddings aligned to ``captions`` through ``store``: LAION rows (key, TEXT; stage 02's
    store: what it embedded is read back) or ImageNet-Captions (image_key, text; by file name)."""
    if "TEXT" in captions:
        keys, texts = captions["key"].to_numpy(np.int64), captions["TEXT"]
    else:
        keys, texts = captions["image_key"].astype(str).to_numpy(object), captions["text"]
    return embed_with_store(encoder, keys, texts.to_numpy(object), store, batch_size=batch_size)
