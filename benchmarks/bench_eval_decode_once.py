"""Benchmark: evaluating N classifiers with decode-once vs one decode per model.

Writes ~200 JPEGs (random photos-like noise, 500x375 like ImageNet val) to a temp folder and
runs N small random-init timm models that share one preprocessing config:
- decode-once: ``laionet.evaluation.evaluate`` with all N predictors (each image decoded and
  transformed once per batch, every model run on the same tensors);
- naive: ``evaluate`` once per model (each model decodes and transforms every image itself).
Both paths produce identical results tables (checked). Prints images/s and the ratio.

Then stage 04's path against the old one, in the same run (identical rows checked):
- old: ``evaluate`` in the calling process, every result kept in memory, written at the end;
- new: ``evaluate_shards``: per (model, shard) result files as they are made (resume), at most
  ``--max-models`` loaded at once, decoding in ``--workers`` DataLoader worker processes.

    python benchmarks/bench_eval_decode_once.py [--images 200] [--models 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = rng.integers(0, 255, size=(3,), dtype=np.uint8)
        arr = np.clip(base + rng.normal(0, 40, size=(375, 500, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img_{i:05d}.JPEG"
        Image.fromarray(arr).save(p, quality=90)
        out.append(p)
    return out


def make_predictors(n_models: int, ckpt_dir: Path, wnids: list[str]):
    import timm

    from laionet.jobs.inference import classifier_predictor
    from laionet.models.classifiers import Classifier

    preds = []
    for i in range(n_models):
        torch.manual_seed(i)
        model = timm.create_model("resnet10t", num_classes=len(wnids))
        ckpt = ckpt_dir / f"m{i}.pth"
        torch.save(model.state_dict(), ckpt)
        spec = Classifier(f"m{i}", "resnet10t", checkpoint=str(ckpt), output_wnids=wnids)
        preds.append(classifier_predictor(spec))
    return preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--max-models", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from laionet.jobs.inference import evaluate
    from laionet.models.labels import label_space_wnids

    wnids = label_space_wnids("imagenet1k")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_jpegs(tmp, args.images)
        recs = [(p.name, wnids[i % 1000], p) for i, p in enumerate(paths)]
        preds = make_predictors(args.models, tmp, wnids)
        evaluate(recs[:8], preds, "warmup", batch_size=8, progress=False)

        t0 = time.perf_counter()
        once = evaluate(recs, preds, "bench", batch_size=args.batch_size, progress=False)
        t_once = time.perf_counter() - t0

        t0 = time.perf_counter()
        naive = [evaluate(recs, [p], "bench", batch_size=args.batch_size, progress=False)
                 for p in preds]
        t_naive = time.perf_counter() - t0

        from laionet.jobs.inference import evaluate_shards, shard_tables

        shards = [(f"s{i:03d}", recs[i:i + args.shard_size])
                  for i in range(0, len(recs), args.shard_size)]
        t0 = time.perf_counter()
        evaluate_shards(shards, preds, "bench", tmp / "parts", batch_size=args.batch_size,
                        n_workers=args.workers, max_models=args.max_models, progress=False)
        t_shards = time.perf_counter() - t0
        import pyarrow as pa

        sharded = pa.concat_tables(list(shard_tables(tmp / "parts", [s for s, _ in shards],
                                                     [p.name for p in preds])))

    import pyarrow as pa

    same = pa.concat_tables(naive).sort_by([("model", "ascending"), ("image_key", "ascending")]) \
        .equals(once.sort_by([("model", "ascending"), ("image_key", "ascending")]))
    n = args.images * args.models  # image-model evaluations
    print(f"{args.images} JPEGs x {args.models} models (resnet10t, shared preprocessing), "
          f"batch {args.batch_size}, {torch.get_num_threads()} torch threads")
    print(f"decode-once:      {t_once:7.2f} s  {n / t_once:8.1f} image-model evals/s "
          f"({args.images / t_once:.1f} images/s for all models)")
    print(f"decode per model: {t_naive:7.2f} s  {n / t_naive:8.1f} image-model evals/s "
          f"({args.images / t_naive:.1f} images/s for all models)")
    print(f"ratio (naive time / decode-once time): {t_naive / t_once:.2f}x; identical results: {same}")
    key = [("model", "ascending"), ("image_key", "ascending")]
    same04 = sharded.sort_by(key).equals(once.sort_by(key))
    print(f"stage 04 old path (evaluate, in process):        {args.images / t_once:8.1f} rows/s "
          f"(images x all models)")
    print(f"stage 04 new path (evaluate_shards, {args.workers} workers): {args.images / t_shards:8.1f} "
          f"rows/s, {len(shards)} shards on disk")
    print(f"ratio (new rows/s / old rows/s): {t_once / t_shards:.2f}x; identical results: {same04}")


if __name__ == "__main__":
    main()
