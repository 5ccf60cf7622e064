"""Benchmark: bytes a caption of stage 09's caption index, Flat vs the IVF-PQ32 of the size rule.

Builds ``laionet.jobs.caption_index.index_parts`` over synthetic LAION parts (captions "caption <i>")
with a cheap deterministic stand-in text encoder (a seeded unit vector per caption: the index,
not the encoder, is measured), once Flat and once with the IVF-PQ factory (PQ32 codes: 32 bytes
+ 8 of row key a caption), and prints bytes on disk a caption (with and without the fixed cost
of the trained quantizer and codebooks, which each part file repeats) and the projection to
LAION-400M against the authors' 16 GB (41 bytes a caption).

    python benchmarks/bench_index_bytes.py [--rows 20000] [--parts 2] [--dim 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LAION_ROWS = 413_871_335


class StandIn:
    """Deterministic stand-in text encoder (declared as such): seeded unit vectors."""

    name = "stand-in"

    def __init__(self, dim):
        self.dim = dim

    def embed_texts(self, texts, batch_size=64, progress=False):
        out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nlist", type=int, default=64)
    args = ap.parse_args()
    from laionet.jobs import caption_index as rt

    enc = StandIn(args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = {}
        per = args.rows // args.parts
        for p in range(args.parts):
            f = tmp / f"part-{p:05d}.parquet"
            pq.write_table(pa.table({"TEXT": [f"caption {p}-{i}" for i in range(per)]}), f)
            parts[p] = f
        pq_m = rt.suggest_factory(LAION_ROWS, args.dim).split(",")[1]
        for factory in ("Flat", f"IVF{args.nlist},{pq_m}"):
            t0 = time.perf_counter()
            idx = rt.index_parts(parts, enc, tmp / factory.replace(",", "_"), factory=factory,
                                 train_size=min(args.rows, 40 * max(args.nlist, 256)))
            dt = time.perf_counter() - t0
            fixed = ((tmp / factory.replace(",", "_") / rt.TRAINED).stat().st_size
                     if rt.n_lists(factory) else 0)
            total = sum(r["bytes"] for r in idx.records().values())
            marginal = (total - args.parts * fixed) / idx.ntotal
            print(f"{factory:14s} {idx.ntotal} captions, {args.dim}-d: {idx.bytes_per_caption():7.1f} "
                  f"B/caption on disk, {marginal:6.1f} B/caption without the fixed "
                  f"{fixed / 1e6:.2f} MB per part file; LAION-400M: "
                  f"{marginal * LAION_ROWS / 1e9:6.1f} GB (authors: 16 GB, 41 B/caption); "
                  f"built in {dt:.1f}s")
    print(f"size rule for LAION-400M: {rt.suggest_factory(LAION_ROWS, args.dim)}")


if __name__ == "__main__":
    main()
