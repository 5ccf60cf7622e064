"""Image embeddings, the one way every stage gets them (``Embedder``), through float32 stores keyed
by image key and ``content_hash`` of the image file's bytes (a file replaced, or a LAION row
downloaded with other settings, is embedded again; float16 would move the 4-decimal §4.2
thresholds). An ``ImageSource`` says where a dataset's images are read and names its store."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from laionet.jobs.download import download_beyond, load_manifest, report, shard_dir
from laionet.jobs.embedding_store import EmbeddingStore, content_hash
from laionet.method.similarity import group_by_class, sample_per_class
from laionet.sources.imagenet import decode_image

# The store name of each dataset's images, the same in every stage that embeds them.
LAION = "laion"                # LAION rows' images, whoever downloaded them (row keys)
IMAGENET_VAL = "imagenet_val"  # ImageNet val files (file names)
IMAGENET_TRAIN = "imagenet_train"
IMAGE_DTYPE = "float32"


def image_store(cache_root: str | os.PathLike, dataset: str, encoder_name: str) -> EmbeddingStore:
    """The float32 store of one dataset's images under ``cache_root``. A float16 store of an older
    version is left alone: the float32 one lives beside it (``<encoder>@float32``)."""
    store = EmbeddingStore.at(cache_root, dataset, encoder_name, dtype=IMAGE_DTYPE)
    if store.dtype != np.dtype(IMAGE_DTYPE):
        store = EmbeddingStore(store.dir.with_name(f"{store.dir.name}@{IMAGE_DTYPE}"),
                               encoder_name, IMAGE_DTYPE)
    return store


@dataclass
class ImageEmbeddings:
    """Unit-norm embeddings of one dataset, row i belonging to ``keys[i]``; ``labels`` (image
    key -> wnid) when an ``Embedder`` made them, ``skipped`` the images left out (key -> why)."""

    keys: np.ndarray
    emb: np.ndarray
    encoder: str = ""
    dataset: str = ""
    labels: pd.Series | None = None
    skipped: dict = field(default_factory=dict)

    def by_class(self, labels: Mapping | pd.Series | pd.DataFrame | None = None
                 ) -> dict[str, np.ndarray]:
        """{wnid: rows} by ``labels`` (key -> wnid, default ``self.labels``), or by (key, wnid) rows
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


def read_downloads(download_dir: str | os.PathLike | Sequence[str | os.PathLike],
                   keys: Sequence[int] | None = None,
                   encode_format: str = "jpg") -> Iterator[tuple[int, bytes]]:
    """(row key, stored bytes) of downloaded rows (``keys``: only those), shard by shard; several
    folders (``download.download_beyond``): each row from the first whose manifest lists it."""

    if not isinstance(download_dir, (str, os.PathLike)):
        seen: set[int] = set()
        for d in download_dir:
            left = None if keys is None else [k for k in keys if int(k) not in seen]
            listed = load_manifest(d)["key"]
            seen.update(int(k) for k in (listed if left is None else listed[listed.isin(left)]))
            if left is None or left:
                yield from read_downloads(d, left, encode_format)
        return
    man = load_manifest(download_dir)
    man = man[man["status"].eq("success")]
    if keys is not None:
        man = man[man["key"].isin({int(k) for k in keys})]
    shards = shard_dir(download_dir)
    for name, rows in man.sort_values(["shard", "member"]).groupby("shard", sort=True):
        tar_path = shards / f"{name}.tar"
        with tarfile.open(tar_path) as tf:
            for key, member in zip(rows["key"].tolist(), rows["member"].tolist()):
                f = tf.extractfile(f"{member}.{encode_format}")
                if f is None:
                    raise ValueError(f"{tar_path}: no image {member}.{encode_format} for row "
                                     f"{key}; the shard is damaged: delete {name}_stats.json "
                                     "and rerun the download to redo it")
                yield int(key), f.read()


def read_images(source: ImageSource, keys: Sequence[int]) -> dict[int, Any]:
    """RGB images of downloaded LAION rows by row key (for galleries; missing rows left out)."""
    return {k: decode_image(b)[0] for k, b in read_downloads(source.download_dir, keys)}


def embed_dataset(encoder: Any, items: Iterable[tuple[Any, bytes]], store: EmbeddingStore,
                  keys: Sequence | None = None, paper_rgb_only: bool = False,
                  on_error: str = "raise", batch_size: int = 64, shard_size: int = 2048,
                  progress: bool = True, dataset: str = "") -> ImageEmbeddings:
    """Unit-norm float32 embeddings of ``(key, bytes)`` items through ``store``: only the (key,
    content) pairs not stored are decoded and embedded, in resumable shards; rows follow ``keys``
    (else item order); skipped images (``paper_rgb_only``, ``on_error="skip"``) in ``.skipped``."""
    import torch
    from tqdm.auto import tqdm

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
    done: list = []   # (keys, contents, embeddings) waiting for a store shard

    def embed_batch() -> None:
        if batch:
            k, c, x = zip(*batch)
            done.append((k, c, encoder.embed_images(torch.stack(x))))
            batch.clear()

    def write_shard() -> None:
        embed_batch()
        if done:
            store.add([k for d in done for k in d[0]], np.concatenate([d[2] for d in done]),
                      [c for d in done for c in d[1]])
            done.clear()
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
            if sum(len(d[0]) for d in done) >= shard_size:
                write_shard()
    write_shard()
    out_keys = list(contents) if keys is None else [k for k in keys if k not in skipped]
    missing = [k for k in out_keys if k not in contents]
    if keys is not None and missing:
        raise KeyError(f"embed_dataset({dataset}): {len(missing)} requested keys were not among "
                       f"the images read, e.g. {missing[:5]} (skipped or undecodable upstream?)")
    emb = (store.get(out_keys, [contents[k] for k in out_keys]) if out_keys
           else np.zeros((0, store.dim or 0), np.float32))
    return ImageEmbeddings(np.asarray(out_keys), emb, encoder.name, dataset, skipped=skipped)


def encoder_label(spec: str) -> str:
    """A short display name of an image-encoder spec: 'open_clip ViT-B-32', 'timm convnext_base',
    'demo tower' (checkpoint paths left out)."""
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
    def laion(cls, download_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> ImageSource:
        if not isinstance(download_dir, (str, os.PathLike)):
            download_dir = tuple(download_dir)
        return cls(LAION, download_dir)

    @classmethod
    def imagenet_val(cls, paper_rgb_only: bool = False) -> ImageSource:
        return cls(IMAGENET_VAL, paper_rgb_only=paper_rgb_only)

    @classmethod
    def imagenet_train(cls) -> ImageSource:
        return cls(IMAGENET_TRAIN)

    @classmethod
    def imagenetv2(cls, version: str) -> ImageSource:
        return cls(f"imagenetv2-{version}")


@dataclass
class Embedder:
    """``encoder`` through the stores under ``cache_root``: ``embedder(rows, source)`` embeds every
    row (``image_key`` or LAION ``key``, labelled by ``wnid``, in order); ``classes(rows, source,
    n_per_class, seed)`` the seeded per-class sample, as {wnid: float32 [n, d]}."""

    encoder: Any
    cache_root: str | os.PathLike
    batch_size: int = 64
    on_error: str = "raise"
    progress: bool = True

    def with_encoder(self, encoder: Any) -> Embedder:
        return replace(self, encoder=encoder)

    def __call__(self, rows: pd.DataFrame, source: ImageSource) -> ImageEmbeddings:
        rows = _image_keys(rows)
        store = image_store(self.cache_root, source.dataset, self.encoder.name)
        labels = rows.set_index("image_key")["wnid"]
        kw = {"on_error": self.on_error, "batch_size": self.batch_size,
              "progress": self.progress, "dataset": source.dataset}
        if source.download_dir is not None:
            keys = rows["image_key"].astype("int64").tolist()
            labels.index = labels.index.astype("int64")
            out = embed_dataset(self.encoder, read_downloads(source.download_dir, keys), store,
                                keys=keys, **kw)
        else:
            out = embed_dataset(self.encoder, read_files(rows), store,
                                paper_rgb_only=source.paper_rgb_only, **kw)
        out.labels = labels
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
    """Stages 07/09: ``rows``' images as stage 03 has them, the others downloaded with its settings
    (``download.download_beyond``); (manifest, where to read them)."""
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
