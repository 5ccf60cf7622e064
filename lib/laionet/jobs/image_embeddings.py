"""Image embeddings through the embedding store, keyed by image key and the image file's bytes.

Every stage embeds images the same way: an ``ImageSource`` says where a dataset's images are read
(stage 03's or 07/09's LAION downloads, or image files) and names its store (the constants below,
one name per dataset wherever it is embedded); ``embed_sample`` embeds a per-class sample from
it; ``ClassSampler`` draws seeded per-class samples and embeds them (stages 07 and 09).

The content key of an image is ``content_hash`` of its file bytes (the tar member of a download,
the file on disk), read on every call (decoding and embedding only the misses). So a file replaced
in place is embedded again, and the same LAION row downloaded with other settings (another
resize: other bytes) never meets the other settings' embedding, while the same row with the same
bytes is shared by every stage that downloaded it. (The download manifest's ``sha256`` is of the
bytes as served, before the resize: it would not tell the settings apart.)

Stores are ``EmbeddingStore.at(cache_root, dataset, encoder.name)`` with ``cache_root`` =
``Stage.cache_dir("image_embeddings")``, i.e. ``Stage.cache_dir("image_embeddings", dataset,
encoder.name)``, float32 like the caption stores (float16 would move cosines by up to ~1e-3,
while Section 4.2 thresholds image-to-synset similarities to 4 decimals; a store written in
float16 by an older version is not reused: its dtype is part of the folder check). ``ImageEmbeddings.by_class`` gives the
``{wnid: float32 [n, d]}`` matrices the intra-class statistics (``laionet.method.similarity``) take.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from laionet.jobs.embedding_store import EmbeddingStore, content_hash
from laionet.method.similarity import group_by_class
from laionet.jobs.download import load_manifest, shard_dir
from laionet.sources.imagenet import decode_image
from laionet.method.similarity import sample_per_class

# The store name of each dataset's images, the same in every stage that embeds them.
LAION = "laion"                # LAION rows' images, whoever downloaded them (row keys)
IMAGENET_VAL = "imagenet_val"  # ImageNet val files (file names)
IMAGENET_TRAIN = "imagenet_train"
IMAGE_DTYPE = "float32"        # as captions: 4.2 thresholds these similarities to 4 decimals


def imagenetv2_dataset(version: str) -> str:
    """Store name of an ImageNetV2 release's images (``imagenetv2-matched-frequency``)."""
    return f"imagenetv2-{version}"


def image_store(cache_root: str | os.PathLike, dataset: str, encoder_name: str) -> EmbeddingStore:
    """The store of one dataset's images under ``Stage.cache_dir("image_embeddings")``, in
    ``IMAGE_DTYPE``. A store that an older version wrote in float16 keeps its folder and is left
    alone: the float32 store then lives beside it (``<encoder>@float32``), so no float16 vector
    is ever served to a float32 run."""
    store = EmbeddingStore.at(cache_root, dataset, encoder_name, dtype=IMAGE_DTYPE)
    if store.dtype != np.dtype(IMAGE_DTYPE):
        store = EmbeddingStore(store.dir.with_name(f"{store.dir.name}@{IMAGE_DTYPE}"),
                               encoder_name, IMAGE_DTYPE)
    return store


# --------------------------------------------------------------------------------------------
# Embeddings and their classes
# --------------------------------------------------------------------------------------------

@dataclass
class ImageEmbeddings:
    """Unit-norm embeddings of one dataset, row i belonging to ``keys[i]``; ``labels`` (image
    key -> wnid) when ``embed_sample`` made them, ``skipped`` the images left out (key -> why)."""

    keys: np.ndarray
    emb: np.ndarray
    encoder: str = ""
    dataset: str = ""
    labels: pd.Series | None = None
    skipped: dict = field(default_factory=dict)

    def by_class(self, labels: Mapping | pd.Series | None = None) -> dict[str, np.ndarray]:
        """Group rows by class (``labels``: image key -> wnid, default ``self.labels``); a key
        without label is an error."""
        labels = self.labels if labels is None else labels
        if labels is None:
            raise ValueError(f"{self.dataset}: by_class needs labels (image key -> wnid)")
        lab = pd.Series(labels) if not isinstance(labels, pd.Series) else labels
        wnid = pd.Series(self.keys).map(lab)
        if wnid.isna().any():
            bad = pd.Series(self.keys)[wnid.isna()].head(3).tolist()
            raise KeyError(f"{self.dataset}: {int(wnid.isna().sum())} embedded keys have no "
                           f"class label, e.g. {bad}")
        return group_by_class(self.emb, wnid.to_numpy())


# --------------------------------------------------------------------------------------------
# Reading image bytes
# --------------------------------------------------------------------------------------------

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
    """(row key, stored image bytes) of the downloaded rows of a ``download_laionet`` folder
    (``keys``: only those), read from the tar members its manifest names, shard by shard in
    member order (the order of ``download.iter_downloaded``). Reads only the local tars.
    Several folders (``download.download_beyond``): each row from the first that lists it."""

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


# --------------------------------------------------------------------------------------------
# Embedding through a store
# --------------------------------------------------------------------------------------------

class _Pending:
    """Images waiting for the encoder (a batch) and embeddings waiting for a store shard."""

    def __init__(self, encoder: Any, store: EmbeddingStore, batch_size: int, shard_size: int):
        self.encoder, self.store = encoder, store
        self.batch_size, self.shard_size = batch_size, shard_size
        self.batch: list = []
        self.batch_ids: list = []
        self.ids: list = []
        self.emb: list[np.ndarray] = []

    def push(self, key: Any, content: int, image: Any) -> None:
        self.batch.append(self.encoder.preprocess(image))
        self.batch_ids.append((key, content))
        if len(self.batch) >= self.batch_size:
            self.embed_batch()
        if len(self.ids) >= self.shard_size:
            self.write_shard()

    def embed_batch(self) -> None:
        import torch

        if self.batch:
            self.emb.append(self.encoder.embed_images(torch.stack(self.batch)))
            self.ids.extend(self.batch_ids)
            self.batch, self.batch_ids = [], []

    def write_shard(self) -> None:
        self.embed_batch()
        if self.ids:
            keys, contents = zip(*self.ids)
            self.store.add(list(keys), np.concatenate(self.emb), list(contents))
            self.ids, self.emb = [], []


def embed_dataset(encoder: Any, items: Iterable[tuple[Any, bytes]], store: EmbeddingStore,
                  keys: Sequence | None = None, paper_rgb_only: bool = False,
                  on_error: str = "raise", batch_size: int = 64, shard_size: int = 2048,
                  progress: bool = True, dataset: str = "") -> ImageEmbeddings:
    """Embeddings of ``(key, image file bytes)`` items (``read_files``, ``read_downloads``)
    through ``store``: each image's content is ``content_hash`` of its bytes; only the
    (key, content) pairs not stored are decoded (``datasets.decode_image``) and embedded, in
    shards of ``shard_size`` (an interrupted run resumes). A key read twice counts once.

    Rows are aligned to ``keys`` when given (each must be among the items), else in item order;
    images skipped (non-RGB under ``paper_rgb_only``, undecodable under ``on_error="skip"``)
    are left out and listed in ``.skipped``. Returns unit-norm float32 rows.
    """
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
    pending = _Pending(encoder, store, batch_size, shard_size)
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
            pending.push(key, c, image)
    pending.write_shard()
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
    """Where one dataset's images are read, and its store name (the constants above).

    ``download_dir``: LAION rows of a ``download_laionet`` folder (stage 03's, or 07/09's
    ``shards`` cache), the sample's ``image_key`` (or ``key``) being the row key; None: the
    files in the sample's ``path`` column (ImageNet, ImageNetV2), where ``paper_rgb_only`` skips
    non-RGB images as the authors did (E.7).
    """

    dataset: str
    download_dir: str | os.PathLike | tuple | None = None
    paper_rgb_only: bool = False

    @classmethod
    def laion(cls, download_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> ImageSource:
        """LAION rows of one download folder, or of several (``download.download_beyond``:
        stage 03's first, each row read from the first folder whose manifest lists it)."""
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
        return cls(imagenetv2_dataset(version))


def embed_sample(encoder: Any, sample: pd.DataFrame, source: ImageSource,
                 cache_root: str | os.PathLike, batch_size: int = 64,
                 progress: bool = True, on_error: str = "raise") -> ImageEmbeddings:
    """A per-class sample of one dataset (columns image_key, wnid; path for image files)
    embedded through ``encoder`` and labelled, rows in sample order (``.by_class()`` groups
    them), through the store ``image_store(cache_root, source.dataset, encoder.name)``. Images
    the source skips (and undecodable ones under ``on_error="skip"``) are left out and listed
    in ``.skipped``."""
    store = image_store(cache_root, source.dataset, encoder.name)
    labels = sample.set_index("image_key")["wnid"]
    if source.download_dir is not None:
        keys = sample["image_key"].astype("int64").tolist()
        labels.index = labels.index.astype("int64")
        out = embed_dataset(encoder, read_downloads(source.download_dir, keys), store, keys=keys,
                            on_error=on_error, batch_size=batch_size, progress=progress,
                            dataset=source.dataset)
    else:
        out = embed_dataset(encoder, read_files(sample), store,
                            paper_rgb_only=source.paper_rgb_only, on_error=on_error,
                            batch_size=batch_size, progress=progress, dataset=source.dataset)
    out.labels = labels
    return out


def embed_samples(encoder: Any, samples: Mapping[str, pd.DataFrame],
                  sources: Mapping[str, ImageSource], cache_root: str | os.PathLike,
                  batch_size: int = 64, progress: bool = True,
                  on_error: str = "raise") -> dict[str, ImageEmbeddings]:
    """``embed_sample`` of every named sample (``sources`` has the same names)."""
    missing = sorted(set(samples) - set(sources))
    if missing:
        raise KeyError(f"embed_samples: no ImageSource for {missing} (have {sorted(sources)})")
    return {name: embed_sample(encoder, df, sources[name], cache_root, batch_size, progress,
                               on_error) for name, df in samples.items()}


# --------------------------------------------------------------------------------------------
# Seeded per-class samples, embedded (stages 07 and 09)
# --------------------------------------------------------------------------------------------

@dataclass
class ClassSampler:
    """Draws up to ``n_per_class`` rows per class (``similarity.sample_per_class``, seeded, so
    the same rows are drawn wherever the same table is sampled) and embeds their images from
    ``source`` through the stores under ``cache_root`` (``Stage.cache_dir("image_embeddings")``).

    Rows have the row key in column ``key`` (or ``image_key``) and the class in ``wnid``;
    calling the sampler with them gives {wnid: float32 [n, d]}, so it can be handed to
    functions that embed several tables (``frontier.coverage``).
    """

    encoder: Any
    source: ImageSource
    cache_root: str | os.PathLike
    n_per_class: int = 100
    seed: int = 0

    def with_encoder(self, encoder: Any) -> ClassSampler:
        return replace(self, encoder=encoder)

    def with_source(self, source: ImageSource) -> ClassSampler:
        return replace(self, source=source)

    def embed(self, rows: pd.DataFrame, source: ImageSource | None = None) -> ImageEmbeddings:
        """Embeddings of every row (no sampling), aligned to ``rows``, read from ``source``
        (default: the sampler's; e.g. ``ImageSource.imagenet_val()`` for a table of files)."""
        return embed_sample(self.encoder, _image_keys(rows), source or self.source, self.cache_root)

    def sample(self, rows: pd.DataFrame) -> pd.DataFrame:
        return sample_per_class(_image_keys(rows), self.n_per_class, self.seed)

    def __call__(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        return self.embed(self.sample(rows)).by_class()

    def by_dataset(self, table: pd.DataFrame, column: str = "dataset"
                   ) -> dict[str, dict[str, np.ndarray]]:
        """``self(rows)`` of each dataset of a long table (``frontier.build_datasets``)."""
        return {str(name): self(rows) for name, rows in table.groupby(column, observed=True)}


def _image_keys(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with their image key in ``image_key`` (a LAION table's row key ``key``)."""
    if "key" in rows.columns and "image_key" in rows.columns:
        raise ValueError("rows have both 'key' and 'image_key': keep the column naming the images")
    return rows.rename(columns={"key": "image_key"})
