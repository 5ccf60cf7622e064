"""ImageNetV2's three sampling strategies, applied to simulated candidates with 10 votes each.

Recht et al. (2019) collected new candidates per class, had MTurk workers vote on each, and
defined a candidate's *selection frequency* as the share of "yes" votes. From the same pool:

  threshold0.7       a random sample among candidates with selection frequency >= 0.7
  matched-frequency  a sample matching the selection-frequency histogram of the original
                     validation images (5 bins of width 0.2), class by class
  top-images         the candidates with the highest selection frequency

A class whose pool cannot fill a version is not padded silently: the shortfall is returned.
"""

import numpy as np
import pandas as pd

BINS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0 + 1e-9])
THRESHOLD = 0.7


def bin_quota(reference_freq: np.ndarray, n: int) -> np.ndarray:
    """Per-bin counts for ``n`` images matching the histogram of ``reference_freq``
    (largest remainder rounding, so the quota always sums to ``n``)."""
    share = np.bincount(np.digitize(reference_freq, BINS[1:-1]), minlength=len(BINS) - 1)
    want = share / len(reference_freq) * n
    quota = np.floor(want).astype(int)
    order = np.argsort(-(want - quota), kind="stable")
    quota[order[: n - quota.sum()]] += 1
    return quota


def _matched(freq: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pick per bin; a bin without enough candidates borrows from the nearest bins."""
    bins = np.digitize(freq, BINS[1:-1])
    left = {b: list(rng.permutation(np.flatnonzero(bins == b))) for b in range(len(quota))}
    picked = []
    for b, q in enumerate(quota):
        for _ in range(q):
            # nearest bin (by distance, ties to the higher frequency) that still has candidates
            for d in sorted(range(len(quota)), key=lambda x: (abs(x - b), -x)):
                if left[d]:
                    picked.append(left[d].pop())
                    break
    return np.array(picked, dtype=np.int64)


def sample_versions(pool: pd.DataFrame, val_freq: np.ndarray, n: int,
                    rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Row positions of ``pool`` (columns label, selection_frequency) selected per version,
    and the per-version shortfalls {version: {label: missing images}}."""
    quota = bin_quota(val_freq, n)
    out: dict[str, list] = {"matched-frequency": [], "threshold0.7": [], "top-images": []}
    short: dict[str, dict] = {k: {} for k in out}
    freq_all = pool["selection_frequency"].to_numpy()
    for c in np.unique(pool["label"].to_numpy()):  # per class (a handful), vectorised within
        rows = np.flatnonzero(pool["label"].to_numpy() == c)
        freq = freq_all[rows]
        out["threshold0.7"].append(rng.permutation(rows[freq >= THRESHOLD])[:n])  # random among them
        # top-images: highest frequency, ties broken by a seeded shuffle
        tie = rng.random(len(rows))
        out["top-images"].append(rows[np.lexsort((tie, -freq))[:n]])
        out["matched-frequency"].append(rows[_matched(freq, quota, rng)])
        for k in out:
            if len(out[k][-1]) < n:
                short[k][int(c)] = n - len(out[k][-1])
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}, short
