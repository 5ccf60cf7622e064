"""Per-image top-1 / top-5 results of many models, decoding every image once.

Predictors that share a preprocessing configuration (timm data config, or one zero-shot image
encoder) form a group: each image is decoded once per batch (PIL, ``convert('RGB')``), each
distinct transform is applied once, and every model of the group runs on that tensor batch
under ``torch.inference_mode``. The output is one long table, one row per (image, model):

    image_key (str), dataset (str), model (str), wnid (str, true class),
    top5 (list<str>: the 5 highest-scoring mapped outputs), correct1, correct5 (bool; null when
    the image is missing or undecodable: excluded, never counted wrong)

Paper semantics (spec A11, A13): a classifier's scores are restricted to its mapped outputs
(those whose wnid is in its label universe, the ImageNet class list), top-k is correct iff the
true wnid is among the k first; a class with no output is therefore always wrong. Zero-shot:
correct iff the true class's similarity >= the k-th largest (ties count as correct); a true
class outside the text queries gives null, as in the authors' code.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from laionet.models.classifiers import Classifier, classifier_wnids, load_classifier
from laionet.models.labels import mapped_outputs
from laionet.jobs.embedding_store import safe_name
from laionet.util.files import write_parquet
from laionet.jobs.download import read_member, resize_like_download

TOPK = 5
RESULT_SCHEMA = pa.schema([
    ("image_key", pa.string()), ("dataset", pa.string()), ("model", pa.string()),
    ("wnid", pa.string()), ("top5", pa.list_(pa.string())),
    ("correct1", pa.bool_()), ("correct5", pa.bool_()),
])


@dataclass
class Predictor:
    """A model as the evaluation loop sees it.

    ``score(batch) -> [B, len(output_wnids)]`` over the mapped outputs only; ``transform`` turns
    a decoded RGB PIL image into the model's input tensor; predictors with equal
    ``transform_key`` share one transformed batch. ``ties_correct``: the zero-shot rule
    (true score >= k-th score) instead of rank membership. ``missing_as_wrong``: count missing
    images as wrong (the authors' CLIP NaN bug, E.5) instead of excluding them.
    ``unknown_class``: correctness of an image whose true class has no output (False for
    classifiers, as in the paper; None for zero-shot).
    """

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


def _data_config_key(cfg: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()))


def classifier_predictor(spec: Classifier, universe: Iterable[str] | None = None,
                         device: str = "cpu") -> Predictor:
    """Load ``spec`` and wrap it; ``universe`` = the label universe its outputs are restricted
    to (the paper: the ImageNet class list; None = every output)."""
    from timm.data import create_transform

    model, cfg = load_classifier(spec, device=device)
    wnids = classifier_wnids(spec, model.num_classes)
    keep = mapped_outputs(wnids, universe)
    if keep.size == 0:
        raise ValueError(f"classifier {spec.name!r}: none of its {len(wnids)} outputs maps to a "
                         "wnid of the label universe; check its output_wnids")
    keep_t = torch.from_numpy(keep).to(device)

    def score(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device)).index_select(1, keep_t)

    return Predictor(name=spec.name, group=spec.group, transform=create_transform(**cfg),
                     transform_key=("timm", _data_config_key(cfg)), score=score,
                     output_wnids=[wnids[i] for i in keep],
                     info={"arch": spec.arch, "data_config": cfg, "n_outputs": len(wnids),
                           "n_mapped": int(keep.size)})


def zero_shot_predictor(name: str, image_encoder: Any, text_embeddings: np.ndarray,
                        class_wnids: Sequence[str], group: str = "clip",
                        paper_nan_as_wrong: bool = False) -> Predictor:
    """CLIP-style zero-shot: cosine similarity of the image embedding to each class text.

    ``image_encoder`` has ``preprocess(PIL) -> tensor`` and ``embed_images(batch) -> [B, d]``
    L2-normalised (laionet.models); ``text_embeddings`` [C, d] L2-normalised, row i for
    ``class_wnids[i]`` (the authors: name_def of every class).
    """
    text = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    if text.shape[0] != len(class_wnids):
        raise ValueError(f"zero-shot {name!r}: {text.shape[0]} text embeddings for "
                         f"{len(class_wnids)} classes")

    def score(x: torch.Tensor) -> torch.Tensor:
        emb = torch.as_tensor(np.asarray(image_encoder.embed_images(x), dtype=np.float32))
        return emb @ text.T

    return Predictor(name=name, group=group, transform=image_encoder.preprocess,
                     transform_key=("encoder", getattr(image_encoder, "name", name), id(image_encoder)),
                     score=score, output_wnids=list(class_wnids), ties_correct=True,
                     missing_as_wrong=paper_nan_as_wrong, unknown_class=None)


# --------------------------------------------------------------------------------------------
# decoding


def decode_image(source: Any):
    """An RGB PIL image from a path, bytes or PIL image; None for a missing image (None).

    Every mode (L, P, RGBA, CMYK) is converted, never rejected (fix of spec E.7). A file that
    exists but cannot be decoded raises; ``evaluate`` records it as missing and reports it.
    """
    from PIL import Image

    if source is None:
        return None
    if isinstance(source, Image.Image):
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        source = Path(source)
    with Image.open(source) as im:
        return im.convert("RGB")


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------
# scoring -> top-5 and correctness (vectorised per batch)


def _topk_results(p: Predictor, scores: torch.Tensor, true_wnids: Sequence[str]) -> tuple:
    """(top5 wnid array [B,5], correct1 [B], correct5 [B] as object arrays with None)."""
    k = min(TOPK, scores.shape[1])
    vals, idx = scores.float().topk(k, dim=1)
    out_w = np.asarray(p.output_wnids, dtype=object)
    top = out_w[idx.numpy()]
    true_idx = pd.Index(p.output_wnids).get_indexer(list(true_wnids))
    known = true_idx >= 0
    res = {}
    for kk in (1, 5):
        kk_ = min(kk, k)
        if p.ties_correct:
            ti = torch.from_numpy(np.where(known, true_idx, 0))
            true_score = scores.float().gather(1, ti[:, None])[:, 0]
            hit = (true_score >= vals[:, kk_ - 1]).numpy()
        else:
            hit = (idx[:, :kk_].numpy() == true_idx[:, None]).any(axis=1)
        col = hit.astype(object)
        col[~known] = p.unknown_class
        res[kk] = col
    return top, res[1], res[5]


@dataclass
class _Columns:
    """Growing column lists of the result table (one entry per image and model)."""

    key: list = field(default_factory=list)
    model: list = field(default_factory=list)
    wnid: list = field(default_factory=list)
    top5: list = field(default_factory=list)
    c1: list = field(default_factory=list)
    c5: list = field(default_factory=list)

    def add(self, name, keys, wnids, top, c1, c5):
        self.key.append(np.asarray(keys, dtype=object))
        self.model.append(np.full(len(keys), name, dtype=object))
        self.wnid.append(np.asarray(wnids, dtype=object))
        self.top5.extend(top)
        self.c1.append(np.asarray(c1, dtype=object))
        self.c5.append(np.asarray(c5, dtype=object))

    def table(self, dataset: str) -> pa.Table:
        cat = (lambda xs: np.concatenate(xs) if xs else np.array([], dtype=object))
        n = sum(len(k) for k in self.key)
        return pa.table({
            "image_key": pa.array(cat(self.key).astype(str), pa.string()),
            "dataset": pa.array(np.full(n, dataset, dtype=object), pa.string()),
            "model": pa.array(cat(self.model), pa.string()),
            "wnid": pa.array(cat(self.wnid), pa.string()),
            "top5": pa.array(self.top5, pa.list_(pa.string())),
            "correct1": pa.array(cat(self.c1), pa.bool_()),
            "correct5": pa.array(cat(self.c5), pa.bool_()),
        }, schema=RESULT_SCHEMA)


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


def _score_batch(groups: dict[Hashable, list[Predictor]], keys: Sequence, wnids: Sequence,
                 tensors: dict[Hashable, torch.Tensor | None], ok: np.ndarray,
                 cols: Callable[[str], _Columns]) -> None:
    """Every predictor on one decoded batch: ``tensors[transform_key]`` holds the transformed
    images of the rows where ``ok`` (None when none decoded); rows not ok are missing rows.
    ``cols(model name)`` is the column set the model's rows go to."""
    ok_keys = [k for k, good in zip(keys, ok) if good]
    ok_wnids = [w for w, good in zip(wnids, ok) if good]
    miss_keys = [k for k, good in zip(keys, ok) if not good]
    miss_wnids = [w for w, good in zip(wnids, ok) if not good]
    for tkey, group in groups.items():
        x = tensors.get(tkey)
        for p in group:
            if x is not None and ok_keys:
                top, c1, c5 = _topk_results(p, p.score(x), ok_wnids)
                cols(p.name).add(p.name, ok_keys, ok_wnids, list(top.tolist()), c1, c5)
            if miss_keys:
                fill = np.full(len(miss_keys), None, dtype=object)
                if p.missing_as_wrong:  # the authors' NaN >= NaN: wrong, if the class is known
                    fill[pd.Index(p.output_wnids).get_indexer(miss_wnids) >= 0] = False
                cols(p.name).add(p.name, miss_keys, miss_wnids, [None] * len(miss_keys), fill, fill)


def evaluate(records: Iterable[tuple[Any, str, Any]], predictors: Sequence[Predictor],
             dataset: str, batch_size: int = 64, progress: bool = True,
             total: int | None = None, errors: list | None = None) -> pa.Table:
    """Run every predictor on every record ``(image_key, true wnid, source)``, in memory.

    ``source`` is a path, bytes, a PIL image or None (missing: a null row per model, or False
    for predictors with ``missing_as_wrong``). Undecodable files become missing rows and are
    listed in ``errors`` (image_key, message) when a list is given; nothing is dropped.
    Stage 04 itself runs ``evaluate_shards`` (per shard, on disk, decoding in workers).
    """
    groups = _groups(predictors)
    cols = _Columns()
    bar = _progress(progress, total, f"evaluate {dataset}")
    with torch.inference_mode():
        for batch in batched(records, batch_size):
            keys = [r[0] for r in batch]
            wnids = [r[1] for r in batch]
            images = []
            for key, _, src in batch:  # decode once for all groups and models
                try:
                    images.append(decode_image(src))
                except Exception as exc:  # a corrupt file is a missing image, reported
                    images.append(None)
                    if errors is not None:
                        errors.append((str(key), f"{type(exc).__name__}: {exc}"))
            ok = np.array([im is not None for im in images])
            tensors = {k: (torch.stack([g[0].transform(im) for im in images if im is not None])
                           if ok.any() else None) for k, g in groups.items()}
            _score_batch(groups, keys, wnids, tensors, ok, lambda name: cols)
            bar.update(len(batch))
    bar.close()
    return cols.table(dataset)


# --------------------------------------------------------------------------------------------
# per shard, on disk, decoding in worker processes (stage 04)


@dataclass(frozen=True)
class TarMember:
    """An image stored inside a tar (``laionet.jobs.download.member_index``): one seek, one read."""

    tar: str
    offset: int
    size: int

    def read(self) -> bytes:
        return read_member(self.tar, self.offset, self.size)


@dataclass(frozen=True)
class ResizedFile:
    """An image file as LAIONet's download would have stored it: resized and re-encoded with that
    download's settings (``download.download_settings``) when read (resolution parity)."""

    path: str
    settings: dict

    def read(self) -> bytes:
        return resize_like_download(Path(self.path).read_bytes(), self.settings)


class _Decoded(torch.utils.data.Dataset):
    """Records of the shards to do; item i -> (i, {transform_key: tensor} or None, error):
    the image is decoded once and each distinct preprocessing applied to it, in a worker."""

    def __init__(self, records: Sequence[tuple], transforms: dict[Hashable, Callable]):
        self.records, self.transforms = records, transforms

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        key, _, src = self.records[i]
        if src is None:
            return i, None, None
        try:
            im = decode_image(src.read() if isinstance(src, (TarMember, ResizedFile)) else src)
            return i, {k: t(im) for k, t in self.transforms.items()}, None
        except Exception as exc:  # a corrupt file is a missing image, reported
            return i, None, f"{type(exc).__name__}: {exc}"


def _as_is(batch):
    return batch


def _shard_batches(sizes: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches that never straddle two shards."""
    out, start = [], 0
    for n in sizes:
        out += [list(range(s, min(s + batch_size, start + n)))
                for s in range(start, start + n, batch_size)]
        start += n
    return out


def evaluate_shards(shards: Sequence[tuple[str, Sequence[tuple]]],
                    predictors: Sequence[Callable[[], Predictor]] | Sequence[Predictor],
                    dataset: str, out_dir: str | os.PathLike, *, names: Sequence[str] | None = None,
                    batch_size: int = 64, n_workers: int = 0, max_models: int = 8,
                    progress: bool = True, on_loaded: Callable[[Predictor], None] | None = None
                    ) -> list[tuple[str, str]]:
    """Evaluate ``shards`` ((name, records) in order) with every predictor, one result file per
    (model, shard): ``out_dir/<shard>/<model>.parquet``, written as soon as the shard is done.

    A finished (model, shard) file is never recomputed (resume). ``predictors``: Predictors or
    zero-argument loaders of them (with ``names``: the model names, so finished models are not
    loaded at all); at most ``max_models`` are loaded at once, and each batch of models decodes
    the images it still needs once, in ``n_workers`` DataLoader worker processes (0: in this
    process) that apply each distinct preprocessing. Returns the decode errors
    (image_key, message) met. ``on_loaded(predictor)`` is called after each load.
    """

    out_dir = Path(out_dir)
    loaders = [(lambda p=p: p) if isinstance(p, Predictor) else p for p in predictors]
    names = list(names) if names is not None else [
        p.name if isinstance(p, Predictor) else None for p in predictors]
    if None in names:
        raise ValueError("evaluate_shards: give names= for predictor loaders")
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: duplicate model names {names}")

    def path(shard: str, model: str) -> Path:
        return out_dir / safe_name(shard) / f"{safe_name(model)}.parquet"

    errors: list[tuple[str, str]] = []
    todo = [i for i, n in enumerate(names) if not all(path(s, n).is_file() for s, _ in shards)]
    def run_chunk(chunk: list[int]) -> None:  # its models die with its frame
        preds = []
        for i in chunk:
            p = loaders[i]()
            if p.name != names[i]:
                raise ValueError(f"evaluate_shards: loader {i} gave {p.name!r}, named {names[i]!r}")
            preds.append(p)
            if on_loaded is not None:
                on_loaded(p)
        groups = _groups(preds)
        pending = [(s, recs, [p for p in preds if not path(s, p.name).is_file()])
                   for s, recs in shards]
        pending = [(s, r, ps) for s, r, ps in pending if ps]
        if not pending:
            return
        records = [r for _, recs, _ in pending for r in recs]
        data = _Decoded(records, {k: g[0].transform for k, g in groups.items()})
        batches = _shard_batches([len(r) for _, r, _ in pending], batch_size)
        loader = torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=_as_is,
                                             num_workers=n_workers)
        bar = _progress(progress, len(records),
                        f"evaluate {dataset} ({', '.join(p.name for p in preds)})")
        shard_of = np.repeat(np.arange(len(pending)), [len(r) for _, r, _ in pending])
        ends = np.cumsum([len(r) for _, r, _ in pending])
        cur = 0
        cols: dict[str, _Columns] = {}
        done_upto = 0

        def flush(j: int) -> None:
            s, _, ps = pending[j]
            for p in ps:
                write_parquet(cols.get(p.name, _Columns()).table(dataset), path(s, p.name))
            cols.clear()

        with torch.inference_mode():
            it = iter(loader) if len(records) else iter(())
            for batch in it:
                idx = [b[0] for b in batch]
                j = int(shard_of[idx[0]])
                while cur < j:  # shards with no records left between batches
                    flush(cur)
                    cur += 1
                recs = [records[i] for i in idx]
                ok = np.array([b[1] is not None for b in batch])
                for (i, _, err), r in zip(batch, recs):
                    if err is not None:
                        errors.append((str(r[0]), err))
                tensors = {k: (torch.stack([b[1][k] for b in batch if b[1] is not None])
                               if ok.any() else None) for k in groups}
                s_preds = {id(p) for p in pending[j][2]}
                g = {k: [p for p in v if id(p) in s_preds] for k, v in groups.items()}
                _score_batch({k: v for k, v in g.items() if v}, [r[0] for r in recs],
                             [r[1] for r in recs], tensors, ok,
                             lambda name: cols.setdefault(name, _Columns()))
                bar.update(len(batch))
                done_upto = idx[-1] + 1
                if done_upto == ends[j]:
                    flush(j)
                    cur = j + 1
            while cur < len(pending):  # trailing empty shards
                flush(cur)
                cur += 1
        bar.close()

    for start in range(0, len(todo), max(1, max_models)):
        run_chunk(todo[start:start + max(1, max_models)])
    return errors


def shard_tables(out_dir: str | os.PathLike, shards: Sequence[str], models: Sequence[str]
                 ) -> Iterator[pa.Table]:
    """The (model, shard) result files of ``evaluate_shards`` in shard order, then model order."""
    import pyarrow.parquet as pq

    for s in shards:
        for m in models:
            yield pq.read_table(Path(out_dir) / safe_name(s) / f"{safe_name(m)}.parquet",
                                schema=RESULT_SCHEMA)


def _progress(enabled: bool, total: int | None, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled)
