"""Image embeddings, the one way every stage gets them (``Embedder``), through float32 stores keyed
by image key and ``content_hash`` of the image's bytes (a replaced file, or a LAION row downloaded
with other settings, is embedded again; float16 would move the 4-decimal §4.2 thresholds). An
``ImageSource`` says where a dataset's images are read and names its store."""

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from laionet.jobs.download import download_beyond, read_downloads, report
from laionet.jobs.embedding_store import EmbeddingStore, content_hash
from laionet.method.similarity import group_by_class, sample_per_class
from laionet.sources.imagenet import decode_image

# The store name of each dataset's images, the same in every stage that embeds them.
LAION = "laion"                # LAION rows' images (row keys), whoever downloaded them
IMAGENET_VAL = "imagenet_val"  # ImageNet val files (file names)
IMAGENET_TRAIN = "imagenet_train"
IMAGE_DTYPE = "float32"


def image_store(cache_root: str | os.PathLike, dataset: str, encoder_name: str) -> EmbeddingStore:
    """One dataset's float32 store (beside an older float16 one, as ``<encoder>@float32``)."""
    store = EmbeddingStore.at(cache_root, dataset, encoder_name, dtype=IMAGE_DTYPE)
    if store.dtype != np.dtype(IMAGE_DTYPE):
        store = EmbeddingStore(store.dir.with_name(f"{store.dir.name}@{IMAGE_DTYPE}"),
                               encoder_name, IMAGE_DTYPE)
    return store


@dataclass
class ImageEmbeddings:
    """Unit-norm embeddings of one dataset, row i of ``keys[i]``; ``labels`` (image key -> wnid)
    from an ``Embedder``, ``skipped`` the images left out (key -> why)."""

    keys: np.ndarray
    emb: np.ndarray
    encoder: str = ""
    dataset: str = ""
    labels: pd.Series | None = None
    skipped: dict = field(default_factory=dict)

    def by_class(self, labels: Mapping | pd.Series | pd.DataFrame | None = None
                 ) -> dict[str, np.ndarray]:
        """{wnid: rows} by ``labels`` (key -> wnid; default ``self.labels``) or (key, wnid) rows
        where a key may serve several classes (stage 09; keys without embedding left out)."""
        if isinstance(labels, pd.DataFrame):
            pos = pd.Index(self.keys).get_indexer(labels["key"])
            return group_by_class(self.emb[pos[pos >= 0]], labels["wnid"].to_numpy()[pos >= 0])
        labels = self.labels if labels is None else labels
        if labels is None:
            raise ValueError(f"{self.dataset}: by_class needs labels (image key -> wnid)")
        wnid = pd.Series(self.keys).map(pd.Series(labels))
        if wnid.isna().any():
            bad = pd.Series(self.keys)[wnid.isna()].head(3).tolist()
            raise KeyError(f"{self.dataset}: {int(wnid.isna().sum())} embedded keys have no "
                           f"class label, e.g. {bad}")
        return group_by_class(self.emb, wnid.to_numpy())


def read_files(table: pd.DataFrame) -> Iterator[tuple[Any, bytes]]:
    """(image_key, file bytes) of each row of a reader's table (columns image_key, path)."""
    for key, path in zip(table["image_key"].tolist(), table["path"].tolist()):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise OSError(f"cannot read image {path} (image_key {key!r}): {exc}") from exc
        yield key, data


def embed_dataset(encoder: Any, items: Iterable[tuple[Any, bytes]], store: EmbeddingStore,
                  keys: Sequence | None = None, paper_rgb_only: bool = False,
                  on_error: str = "raise", batch_size: int = 64, shard_size: int = 2048,
                  progress: bool = True, dataset: str = "") -> ImageEmbeddings:
    """Unit-norm embeddings of ``(key, bytes)`` items through ``store`` (only pairs not stored are
    embedded, in resumable shards), rows in ``keys`` (else item) order, skipped ones listed."""
    if store.encoder_name != encoder.name:
        raise ValueError(f"embed_dataset: store {store.dir} is for {store.encoder_name!r}, "
                         f"encoder is {encoder.name!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if keys is not None:
        keys = list(keys)
        if len(set(keys)) != len(keys):
            raise ValueError(f"embed_dataset({dataset or store.dir}): duplicate keys")
    contents: dict = {}  # key -> content of the images kept, in read order
    skipped: dict = {}
    batch: list = []  # (key, content, preprocessed image) waiting for the encoder
    shard: list = []  # (key, content, embedding) waiting for the store

    def embed_batch(write: bool = False) -> None:
        if batch:
            emb = encoder.embed_images(torch.stack([x for *_, x in batch]))
            shard.extend((k, c, e) for (k, c, _), e in zip(batch, emb))
            batch.clear()
        if shard and (write or len(shard) >= shard_size):
            k, c, e = zip(*shard)
            store.add(list(k), np.stack(e), list(c))
            shard.clear()

    total = len(keys) if keys is not None else (len(items) if hasattr(items, "__len__") else None)
    for key, data in tqdm(items, total=total, desc=f"embed {dataset}", disable=not progress,
                          unit="img"):
        if key in contents or key in skipped:
            continue
        c = content_hash(data)
        cached = bool(store.contains([key], [c])[0])
        if cached and not paper_rgb_only:  # paper_rgb_only: the mode decides, even if stored
            contents[key] = c
            continue
        try:
            image, why = decode_image(data, paper_rgb_only)
        except (OSError, ValueError) as exc:
            if on_error == "raise":
                raise OSError(f"embed_dataset({dataset}): cannot decode image {key!r}: {exc}; "
                              "replace the file, or leave undecodable images out with "
                              "on_error='skip' (notebook 05: `-p 05.on_error skip`; they are "
                              "listed as skipped)") from exc
            image, why = None, f"undecodable: {exc}"
        if image is None:
            skipped[key] = why
            continue
        contents[key] = c
        if not cached:
            batch.append((key, c, encoder.preprocess(image)))
            if len(batch) >= batch_size:
                embed_batch()
    embed_batch(write=True)
    out_keys = list(contents) if keys is None else [k for k in keys if k not in skipped]
    missing = [k for k in out_keys if k not in contents]
    if keys is not None and missing:
        raise KeyError(f"embed_dataset({dataset}): {len(missing)} requested keys were not among "
                       f"the images read, e.g. {missing[:5]} (skipped or undecodable upstream?)")
    emb = (store.get(out_keys, [contents[k] for k in out_keys]) if out_keys
           else np.zeros((0, store.dim or 0), np.float32))
    return ImageEmbeddings(np.asarray(out_keys), emb, encoder.name, dataset, skipped=skipped)


def encoder_label(spec: str) -> str:
    """A display name of an image-encoder spec: 'open_clip ViT-B-32', 'demo tower', ..."""
    kind, _, rest = spec.partition(":")
    if kind == "demo-tower":
        return "demo tower"
    arch = rest.split(":", 1)[0]
    return f"{kind} {arch}" if arch else kind


@dataclass(frozen=True)
class ImageSource:
    """Where one dataset's images are read (LAION download folders, or the rows' ``path`` files,
    ``paper_rgb_only`` skipping non-RGB ones as the authors, E.7), and its store name."""

    dataset: str
    download_dir: str | os.PathLike | tuple | None = None
    paper_rgb_only: bool = False

    @classmethod
    def laion(cls, download_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> "ImageSource":
        if not isinstance(download_dir, (str, os.PathLike)):
            download_dir = tuple(download_dir)
        return cls(LAION, download_dir)

    @classmethod
    def imagenet_val(cls, paper_rgb_only: bool = False) -> "ImageSource":
        return cls(IMAGENET_VAL, paper_rgb_only=paper_rgb_only)

    @classmethod
    def imagenet_train(cls) -> "ImageSource":
        return cls(IMAGENET_TRAIN)

    @classmethod
    def imagenetv2(cls, version: str) -> "ImageSource":
        return cls(f"imagenetv2-{version}")


@dataclass
class Embedder:
    """``encoder`` through the stores under ``cache_root``: ``embedder(rows, source)`` embeds every
    row (``image_key`` or LAION ``key``, labelled by ``wnid``); ``classes(rows, source,
    n_per_class, seed)`` a seeded per-class sample, as {wnid: float32 [n, d]}."""

    encoder: Any
    cache_root: str | os.PathLike
    batch_size: int = 64
    on_error: str = "raise"
    progress: bool = True

    def with_encoder(self, encoder: Any) -> "Embedder":
        return replace(self, encoder=encoder)

    def __call__(self, rows: pd.DataFrame, source: ImageSource) -> ImageEmbeddings:
        rows, laion = _image_keys(rows), source.download_dir is not None
        if laion:  # LAION rows by row key; files in row order
            rows = rows.astype({"image_key": "int64"})
        keys = rows["image_key"].tolist()
        out = embed_dataset(
            self.encoder, read_downloads(source.download_dir, keys) if laion else read_files(rows),
            image_store(self.cache_root, source.dataset, self.encoder.name),
            keys=keys if laion else None, paper_rgb_only=source.paper_rgb_only,
            on_error=self.on_error, batch_size=self.batch_size, progress=self.progress,
            dataset=source.dataset)
        out.labels = rows.set_index("image_key")["wnid"]
        return out

    def classes(self, rows: pd.DataFrame, source: ImageSource, n_per_class: int | None = None,
                seed: int = 0) -> dict[str, np.ndarray]:
        rows = _image_keys(rows)
        if n_per_class:
            rows = sample_per_class(rows, n_per_class, seed)
        return self(rows, source).by_class()


def download_images(rows: pd.DataFrame, download_dir: str | os.PathLike,
                    shards_cache: str | os.PathLike, serve_root: str | os.PathLike | None = None,
                    processes: int = 2) -> tuple[pd.DataFrame, ImageSource]:
    """Stages 07/09: (manifest, source) of ``rows``' images (``download.download_beyond``)."""
    manifest, dirs = download_beyond(rows[["key", "wnid", "URL"]].drop_duplicates("key"),
                                     download_dir, shards_cache, serve_root=serve_root,
                                     processes_count=processes)
    print(*(report(manifest)[k].to_string(index=False) for k in ("overall", "error_kinds")), sep="\n")
    return manifest, ImageSource.laion(dirs)


def _image_keys(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with their image key in ``image_key`` (a LAION table's row key ``key``)."""
    if "key" in rows.columns and "image_key" in rows.columns:
        raise ValueError("rows have both 'key' and 'image_key': keep the column naming the images")
    return rows.rename(columns={"key": "image_key"})
