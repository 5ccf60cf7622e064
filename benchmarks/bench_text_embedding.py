"""Captions/s of the CLIP text tower: length bucketing vs fixed 77-token padding.

Same real web captions (../shared/reference/img2dataset/test_10000.parquet), same randomly
initialised open_clip ViT-B-32 text tower (the speed does not depend on the weights), CPU.
Prints both throughputs, the ratio, and the max abs difference of the embeddings.

    python benchmarks/bench_text_embedding.py [--n 2000] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from laionet.models import load_text_encoder
from laionet.models.text import clip_tokenize

REFERENCE = Path(os.environ.get("LAIONET_REFERENCE",
                                Path(__file__).resolve().parents[2] / "shared" / "reference"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    path = REFERENCE / "img2dataset" / "test_10000.parquet"
    texts = pq.read_table(path, columns=["TEXT"]).column("TEXT").to_pylist()[:args.n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = load_text_encoder("open_clip:ViT-B-32:random", device="cpu")

    t0 = time.perf_counter()
    _, lengths = clip_tokenize(enc.tokenizer, texts)
    t_tok = time.perf_counter() - t0
    enc.embed_texts(texts[:64], batch_size=args.batch_size)  # warm-up

    t0 = time.perf_counter()
    fixed = enc.embed_texts_fixed(texts, batch_size=args.batch_size)
    t_fixed = time.perf_counter() - t0
    t0 = time.perf_counter()
    bucketed = enc.embed_texts(texts, batch_size=args.batch_size)
    t_bucket = time.perf_counter() - t0

    n = len(texts)
    print(f"{n} captions from {path.name}, batch {args.batch_size}, {args.threads} threads, "
          f"random-weight open_clip ViT-B-32 text tower (CPU)")
    print(f"token length: mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, "
          f"max {lengths.max()}; tokenizing {n / t_tok:,.0f} captions/s")
    print(f"fixed 77-token padding : {n / t_fixed:8.1f} captions/s ({t_fixed:.1f} s)")
    print(f"length bucketing       : {n / t_bucket:8.1f} captions/s ({t_bucket:.1f} s)")
    print(f"speed-up               : {t_fixed / t_bucket:.2f}x")
    print(f"max abs difference     : {np.abs(bucketed - fixed).max():.2e}")


if __name__ == "__main__":
    main()
