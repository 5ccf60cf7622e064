"""Per-image top-1 / top-5 results of many models, decoding every image once.

Predictors sharing a preprocessing (timm data config, or one zero-shot image encoder) form a
group: each image is decoded once per batch, each distinct transform applied once. The output
(``RESULT_SCHEMA``) is one row per (image, model); correct1/correct5 are null when the image is
missing or undecodable (excluded, never counted wrong).

Paper semantics (A11, A13): a classifier's scores are restricted to its mapped outputs (wnids of
the ImageNet class list); top-k is correct iff the true wnid is among the k first (a class with
no output is always wrong). Zero-shot: correct iff the true class's similarity >= the k-th
largest (ties count); a true class outside the text queries gives null.
"""

import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from laionet.jobs.download import read_member, resize_like_download
from laionet.jobs.embedding_store import safe_name
from laionet.models.classifiers import Classifier, classifier_wnids, load_classifier
from laionet.models.labels import mapped_outputs
from laionet.sources import imagenet
from laionet.util.files import write_parquet
from laionet.util.fingerprint import Marker, fingerprint

TOPK = 5
RESULT_SCHEMA = pa.schema([("image_key", pa.string()), ("dataset", pa.string()),
                           ("model", pa.string()), ("wnid", pa.string()),
                           ("top5", pa.list_(pa.string())), ("correct1", pa.bool_()),
                           ("correct5", pa.bool_())])


@dataclass
class Predictor:
    """A model as the evaluation loop sees it: ``score(batch) -> [B, len(output_wnids)]``;
    ``transform`` (RGB image -> tensor) shared by predictors of equal ``transform_key``.
    ``ties_correct``: the zero-shot rule; ``missing_as_wrong``: the authors' CLIP NaN bug (E.5);
    ``unknown_class``: correctness when the true class has no output (classifiers False)."""

    name: str
    group: str
    transform: Callable[[Any], torch.Tensor]
    transform_key: Hashable
    score: Callable[[torch.Tensor], torch.Tensor]
    output_wnids: list[str]
    ties_correct: bool = False
    missing_as_wrong: bool = False
    unknown_class: bool | None = False
    info: dict = field(default_factory=dict)


def classifier_predictor(spec: Classifier, universe: Iterable[str] | None = None,
                         device: str = "cpu") -> Predictor:
    """Load ``spec``, outputs restricted to ``universe`` (paper: the ImageNet class list)."""
    from timm.data import create_transform

    model, cfg = load_classifier(spec, device=device)
    # channels-last: the same numbers, convolutions 1.7-1.9x faster on CPU (oneDNN; EfficientNet-
    # Lite0/2, one thread, benchmarks/bench_channels_last.py) and the layout tensor cores want
    model = model.to(memory_format=torch.channels_last)
    wnids = classifier_wnids(spec, model.num_classes)
    keep = mapped_outputs(wnids, universe)
    if keep.size == 0:
        raise ValueError(f"classifier {spec.name!r}: none of its {len(wnids)} outputs maps to a "
                         "wnid of the label universe; check its output_wnids")
    keep_t = torch.from_numpy(keep).to(device)

    def score(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device, memory_format=torch.channels_last)).index_select(1, keep_t)

    key = tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in cfg.items()))
    return Predictor(name=spec.name, group=spec.group, transform=create_transform(**cfg),
                     transform_key=("timm", key), score=score,
                     output_wnids=[wnids[i] for i in keep],
                     info={"arch": spec.arch, "data_config": cfg, "n_outputs": len(wnids),
                           "n_mapped": int(keep.size)})


def zero_shot_predictor(name: str, image_encoder: Any, text_embeddings: np.ndarray,
                        class_wnids: Sequence[str], group: str = "clip",
                        paper_nan_as_wrong: bool = False) -> Predictor:
    """CLIP-style zero-shot: cosine of the image embedding (``image_encoder``) to each class
    text (``text_embeddings`` [C, d], row i for ``class_wnids[i]``; the authors: name_def)."""
    text = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    if text.shape[0] != len(class_wnids):
        raise ValueError(f"zero-shot {name!r}: {text.shape[0]} text embeddings for "
                         f"{len(class_wnids)} classes")

    def score(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.asarray(image_encoder.embed_images(x), dtype=np.float32)) @ text.T

    return Predictor(name=name, group=group, transform=image_encoder.preprocess,
                     transform_key=("encoder", getattr(image_encoder, "name", name),
                                    id(image_encoder)),
                     score=score, output_wnids=list(class_wnids), ties_correct=True,
                     missing_as_wrong=paper_nan_as_wrong, unknown_class=None)


@dataclass(frozen=True)
class TarMember:
    """An image inside a tar (``download.member_index``)."""

    tar: str
    offset: int
    size: int

    def read_bytes(self) -> bytes:
        return read_member(self.tar, self.offset, self.size)


@dataclass(frozen=True)
class ResizedFile:
    """An image file as LAIONet's download would have stored it (resolution parity)."""

    path: str
    settings: dict

    def read_bytes(self) -> bytes:
        return resize_like_download(Path(self.path).read_bytes(), self.settings)


def decode_image(source: Any):
    """An RGB PIL image from a path, bytes, a PIL image, a ``TarMember`` or ``ResizedFile``
    (None: None). Every mode is converted, never rejected (fix of E.7); undecodable: raises."""
    source = Path(source) if isinstance(source, str) else source
    if hasattr(source, "read_bytes"):
        source = source.read_bytes()
    if isinstance(source, (bytes, bytearray)):
        return imagenet.decode_image(source)[0]
    return source if source is None or source.mode == "RGB" else source.convert("RGB")


def source_id(src: Any) -> Any:
    """An image source's identity in a shard's fingerprint: path, size, mtime, offset, settings."""
    path = src.tar if isinstance(src, TarMember) else getattr(src, "path", src)
    if not isinstance(path, (str, os.PathLike)):
        return src
    s = os.stat(path)
    return [str(path), s.st_size, s.st_mtime_ns, getattr(src, "offset", 0),
            getattr(src, "settings", None)]


def _topk_results(p: Predictor, scores: torch.Tensor, true_wnids: Sequence[str]) -> tuple:
    """(top5 wnid array [B,5], correct1 [B], correct5 [B] as object arrays with None)."""
    k = min(TOPK, scores.shape[1])
    vals, idx = scores.float().topk(k, dim=1)
    top = np.asarray(p.output_wnids, dtype=object)[idx.numpy()]
    true_idx = pd.Index(p.output_wnids).get_indexer(list(true_wnids))
    known = true_idx >= 0
    res = []
    for kk in (min(1, k), min(5, k)):
        if p.ties_correct:
            ti = torch.from_numpy(np.where(known, true_idx, 0))
            hit = (scores.float().gather(1, ti[:, None])[:, 0] >= vals[:, kk - 1]).numpy()
        else:
            hit = (idx[:, :kk].numpy() == true_idx[:, None]).any(axis=1)
        res.append(np.where(known, hit.astype(object), p.unknown_class))
    return top, *res


class _Columns(list):
    """The result rows so far, a table per batch (``RESULT_SCHEMA``)."""

    def add(self, dataset: str, model: str, keys, wnids, top5, correct1, correct5) -> None:
        self.append(pa.table([[str(k) for k in keys], [dataset] * len(keys), [model] * len(keys),
                              list(wnids), top5, list(correct1), list(correct5)],
                             schema=RESULT_SCHEMA))

    def table(self) -> pa.Table:
        return pa.concat_tables(self).combine_chunks() if self else RESULT_SCHEMA.empty_table()


def _groups(predictors: Sequence[Predictor]) -> dict[Hashable, list[Predictor]]:
    names = [p.name for p in predictors]
    if not predictors:
        raise ValueError("evaluate: no predictors")
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: duplicate model names {names}")
    groups: dict[Hashable, list[Predictor]] = {}
    for p in predictors:
        groups.setdefault(p.transform_key, []).append(p)
    return groups


class _Decoded(torch.utils.data.Dataset):
    """Item i -> (i, {transform_key: tensor} or None, error): decoded once, each transform once."""

    def __init__(self, records: Sequence[tuple], transforms: dict[Hashable, Callable]):
        self.records, self.transforms = records, transforms

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        src = self.records[i][2]
        if src is None:
            return i, None, None
        try:
            im = decode_image(src)
            return i, {k: t(im) for k, t in self.transforms.items()}, None
        except Exception as exc:  # a corrupt file is a missing image, reported
            return i, None, f"{type(exc).__name__}: {exc}"


def _as_is(batch):
    return batch


def _score(pending: Sequence[tuple[str, Sequence[tuple], list[Predictor]]], dataset: str,
           batch_size: int, n_workers: int, progress: bool, errors: list | None,
           cols: Callable[[str], _Columns], flush: Callable[[int], None]) -> None:
    """Each pending (shard, records, predictors) scored into ``cols(model)``, ``flush(j)`` once
    shard j is done. A missing or undecodable image (in ``errors``) is a null row."""
    records = [r for _, recs, _ in pending for r in recs]
    preds = list({id(p): p for _, _, ps in pending for p in ps}.values())
    groups = _groups(preds)
    sizes = [len(r) for _, r, _ in pending]
    ends, cur = np.cumsum(sizes), 0
    batches = [list(range(s, min(s + batch_size, e)))
               for e, n in zip(ends, sizes) for s in range(e - n, e, batch_size)]
    loader = torch.utils.data.DataLoader(
        _Decoded(records, {k: g[0].transform for k, g in groups.items()}),
        batch_sampler=batches, collate_fn=_as_is, num_workers=n_workers)
    bar = tqdm(total=len(records), desc=f"evaluate {dataset} ({', '.join(p.name for p in preds)})",
               unit="img", disable=not progress)
    shard_of = np.repeat(np.arange(len(pending)), sizes)
    with torch.inference_mode():
        for batch in (loader if records else ()):
            idx = [b[0] for b in batch]
            j = int(shard_of[idx[0]])
            while cur < j:  # shards with no records between batches
                flush(cur)
                cur += 1
            recs = [records[i] for i in idx]
            ok = np.array([b[1] is not None for b in batch])
            if errors is not None:
                errors += [(str(r[0]), b[2]) for b, r in zip(batch, recs) if b[2] is not None]
            keys, wnids = [r[0] for r, g in zip(recs, ok) if g], [r[1] for r, g in zip(recs, ok) if g]
            miss_keys, miss_wnids = ([r[i] for r, g in zip(recs, ok) if not g] for i in (0, 1))
            mine = {id(p) for p in pending[j][2]}
            for tkey, group in groups.items():
                group = [p for p in group if id(p) in mine]
                x = (torch.stack([b[1][tkey] for b in batch if b[1] is not None])
                     if ok.any() and group else None)
                for p in group:
                    if x is not None:
                        top, c1, c5 = _topk_results(p, p.score(x), wnids)
                        cols(p.name).add(dataset, p.name, keys, wnids, top.tolist(), c1, c5)
                    if miss_keys:
                        fill = np.full(len(miss_keys), None, dtype=object)
                        if p.missing_as_wrong:  # the authors' NaN >= NaN: wrong if the class is known
                            fill[pd.Index(p.output_wnids).get_indexer(miss_wnids) >= 0] = False
                        cols(p.name).add(dataset, p.name, miss_keys, miss_wnids,
                                         [None] * len(miss_keys), fill, fill)
            bar.update(len(batch))
            if idx[-1] + 1 == ends[j]:
                flush(j)
                cur = j + 1
        while cur < len(pending):  # trailing empty shards
            flush(cur)
            cur += 1
    bar.close()


def evaluate(records: Iterable[tuple[Any, str, Any]], predictors: Sequence[Predictor],
             dataset: str, batch_size: int = 64, progress: bool = True,
             errors: list | None = None) -> pa.Table:
    """Every predictor on every record (image_key, true wnid, image source or None), in memory."""
    cols = _Columns()
    _score([("all", list(records), list(predictors))], dataset, batch_size, 0, progress, errors,
           lambda name: cols, lambda j: None)
    return cols.table()


def _path(out_dir: Path, shard: str, model: str) -> Path:
    return out_dir / safe_name(shard) / f"{safe_name(model)}.parquet"


def evaluate_shards(shards: Sequence[tuple[str, Sequence[tuple]]],
                    predictors: Sequence[Callable[[], Predictor]] | Sequence[Predictor],
                    dataset: str, out_dir: str | os.PathLike, *, names: Sequence[str] | None = None,
                    model_keys: Mapping[str, str] | None = None, batch_size: int = 64,
                    n_workers: int = 0, max_models: int = 8, progress: bool = True,
                    on_loaded: Callable[[Predictor], None] | None = None) -> list[tuple[str, str]]:
    """``shards`` ((name, records)) with every predictor: ``out_dir/<shard>/<model>.parquet``,
    then its ``Marker`` holding the fingerprint of the model (``model_keys[name]``) and of the
    shard's records; a current one is never recomputed. ``predictors``: Predictors or loaders
    (with ``names``: finished models are never loaded), at most ``max_models`` at once, each batch
    decoding the images once in ``n_workers`` workers. Returns the decode errors."""
    out_dir = Path(out_dir)
    loaders = [(lambda p=p: p) if isinstance(p, Predictor) else p for p in predictors]
    names = list(names) if names is not None else [getattr(p, "name", None) for p in predictors]
    if None in names:
        raise ValueError("evaluate_shards: give names= for predictor loaders")
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: duplicate model names {names}")
    shard_keys = {s: fingerprint([[str(k), w, source_id(src)] for k, w, src in recs])
                  for s, recs in shards}

    def marker(shard: str, model: str) -> Marker:
        path = _path(out_dir, shard, model)
        return Marker(path.with_suffix(".json"), fingerprint(
            [(model_keys or {}).get(model, model), shard_keys[shard]]), path)

    errors: list[tuple[str, str]] = []
    todo = [i for i, n in enumerate(names) if not all(marker(s, n).current() for s, _ in shards)]
    step = max(1, max_models)
    for start in range(0, len(todo), step):  # a batch of models dies before the next is loaded
        preds = []
        for i in todo[start:start + step]:
            preds.append(loaders[i]())
            if preds[-1].name != names[i]:
                raise ValueError(f"evaluate_shards: a loader gave {preds[-1].name!r}, named "
                                 f"{names[i]!r}")
            if on_loaded is not None:
                on_loaded(preds[-1])
        pending = [(s, recs, [p for p in preds if not marker(s, p.name).current()])
                   for s, recs in shards]
        pending = [x for x in pending if x[2]]
        cols: dict[str, _Columns] = {}

        def flush(j: int) -> None:
            s, _, ps = pending[j]
            for p in ps:
                write_parquet(cols.get(p.name, _Columns()).table(), _path(out_dir, s, p.name))
                marker(s, p.name).done()
            cols.clear()

        if pending:
            _score(pending, dataset, batch_size, n_workers, progress, errors,
                   lambda name: cols.setdefault(name, _Columns()), flush)
        preds = pending = []  # this batch's models die before the next batch is loaded
    return errors


def shard_tables(out_dir: str | os.PathLike, shards: Sequence[str], models: Sequence[str]
                 ) -> Iterator[pa.Table]:
    """The (model, shard) result files of ``evaluate_shards`` in shard order, then model order."""
    for s in shards:
        for m in models:
            yield pq.read_table(_path(Path(out_dir), s, m), schema=RESULT_SCHEMA)
