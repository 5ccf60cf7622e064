"""Benchmark: the exact §4.2 frontier (one sort + order statistics) vs the authors' search.

The authors ran scipy.optimize.golden per text threshold, each step counting rows with two
boolean masks over the whole table (A17). This prints both timings, the speed-up, and how far
the golden-section result is from the exact count.

    python benchmarks/bench_frontier.py [--n 2000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import optimize

from laionet.method import frontier as fr


def golden_frontier(text: np.ndarray, image: np.ndarray, grid, n_ref: int) -> list[float]:
    """The authors' route: minimise |N_ref - #(text >= t, image >= i)| over i in (0.2, 1.0)."""
    out = []
    for t in grid:
        def loss(i, t=t):
            return abs(n_ref - int(((text >= t) & (image >= i)).sum()))
        out.append(float(optimize.golden(loss, brack=(0.2, 1.0))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    text = rng.beta(8, 3, args.n).astype(np.float32)
    image = np.clip(0.25 + 0.4 * (text - 0.7) + rng.normal(0, 0.04, args.n), 0, 1).astype(np.float32)
    df = pd.DataFrame({"wnid": rng.integers(0, 1000, args.n).astype(str), "similarity": text,
                       "image_similarity": image})
    grid = np.linspace(0.72, 0.82, 11)
    n_ref = fr.reference_count(df, 0.82, 0.20, inclusive=True)

    t0 = time.perf_counter()
    exact = fr.frontier_fixed_size(df, grid, n_ref, inclusive=True)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    golden = golden_frontier(text, image, grid, n_ref)
    t_golden = time.perf_counter() - t0
    err_golden = [abs(n_ref - int(((text >= t) & (image >= i)).sum())) for t, i in zip(grid, golden)]
    err_exact = (exact["n_rows"] - n_ref).abs().tolist()
    print(f"n = {args.n:,} rows, 11 text thresholds, N_ref = {n_ref:,}")
    print(f"exact order statistic: {t_exact:.2f} s, max |count - N_ref| = {max(err_exact)}")
    print(f"golden-section search: {t_golden:.2f} s, max |count - N_ref| = {max(err_golden)}")
    print(f"speed-up: {t_golden / t_exact:.1f}x")


if __name__ == "__main__":
    main()
