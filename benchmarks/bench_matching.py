"""Benchmark: the vectorized matcher vs the authors' naive loop on a 1M-caption corpus.

    python benchmarks/bench_matching.py [--n 1000000] [--naive-n 5000] [--batch-size 65536]

The corpus resamples the 10,000 real captions of ../shared/reference/img2dataset (seeded) and
injects a lemma into 5 % of them, so both the common case (no match) and matches are exercised.
Lemmas: the authors' 1,825 (lemma2wnid_unique_in_ilsvrc.json). Speeds are captions per CPU second
of this process (time.process_time), i.e. per core, so other load on the machine matters less.
The naive loop (1,825 `in` tests per caption) runs on the first --naive-n captions only and is
extrapolated; the matcher's output on that subset must be identical (asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.method.matching import LemmaIndex, match_batch, match_naive

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LAIONET_REFERENCE", ROOT.parent / "shared" / "reference"))


def corpus(n: int, lemmas: list[str], seed: int = 0) -> pa.Array:
    texts = pq.read_table(REFERENCE / "img2dataset" / "test_10000.parquet",
                          columns=["TEXT"])["TEXT"].to_pylist()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(texts), n)
    inject = rng.random(n) < 0.05
    lem = rng.integers(0, len(lemmas), n)
    out = [f"{texts[i]} {lemmas[j]}" if hit else texts[i] for i, hit, j in zip(pick, inject, lem)]
    return pa.array(out, pa.string())


def cpu_rate(fn, n: int) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return n / (time.process_time() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--naive-n", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=65536)
    args = ap.parse_args()
    pairs = json.loads((REFERENCE / "eval-on-laion" / "lemma2wnid_unique_in_ilsvrc.json").read_text())
    lemmas = [lem for lem, _ in pairs]
    texts = corpus(args.n, lemmas)
    idx = LemmaIndex(lemmas)
    print(f"corpus: {len(texts):,} captions, {texts.nbytes / 1e6:.0f} MB, {len(lemmas)} lemmas")
    for mode in ("paper", "normalized"):
        idx.patterns(mode)  # compile outside the timing (done once per process)
        batches = [texts.slice(i, args.batch_size) for i in range(0, len(texts), args.batch_size)]
        fast, res = cpu_rate(lambda m=mode, bs=batches: [match_batch(b, idx, m) for b in bs],
                             len(texts))
        n_pairs = sum(len(r[0]) for r in res)
        sub = texts.slice(0, args.naive_n)
        slow, naive = cpu_rate(lambda m=mode, t=sub: match_naive(t.to_pylist(), idx, m), len(sub))
        check = match_batch(sub, idx, mode)
        assert np.array_equal(check[0], naive[0]) and np.array_equal(check[1], naive[1]), mode
        print(f"[{mode}] matcher: {fast:,.0f} captions/s per core ({n_pairs:,} matches); "
              f"naive loop: {slow:,.0f} captions/s per core (on {len(sub):,} captions, "
              f"extrapolated); ratio {fast / slow:,.0f}x; outputs identical on the subset "
              f"({len(naive[0]):,} matches)")


if __name__ == "__main__":
    main()
