"""Intra-class similarity: known answers on hand-built embeddings, sampling, CIs, the cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet import similarity as sim


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cluster(rng, n, d, spread, center=None):
    """n unit vectors around a random centre; larger spread = lower intra-class similarity."""
    c = rng.normal(size=d) if center is None else center
    return _unit(c / np.linalg.norm(c) + spread * rng.normal(size=(n, d)) / np.sqrt(d))


# ---------------------------------------------------------------- pairwise statistics

def test_pairwise_known_answers():
    eye = np.eye(4, 6)  # orthogonal -> every pair 0
    same = np.tile(_unit(np.ones((1, 6))), (5, 1))  # identical -> every pair 1
    # three vectors at 0, 90 and 180 degrees in a plane: pairs 0, -1, 0
    plane = np.array([[1.0, 0], [0, 1.0], [-1.0, 0]])
    st = sim.pairwise_stats({"orth": eye, "same": same, "plane": plane, "one": eye[:1]})
    st = st.set_index("wnid")
    assert st.loc["orth", ["n_images", "n_pairs"]].tolist() == [4, 6]
    assert st.loc["orth", "mean"] == pytest.approx(0) and st.loc["orth", "std"] == pytest.approx(0)
    assert st.loc["same", "mean"] == pytest.approx(1) and st.loc["same", "std"] == pytest.approx(0, abs=1e-6)
    assert st.loc["plane", "mean"] == pytest.approx(-1 / 3)
    assert st.loc["plane", "std"] == pytest.approx(np.std([0.0, -1.0, 0.0]))
    assert st.loc["one", "n_pairs"] == 0 and np.isnan(st.loc["one", "mean"])


@pytest.mark.parametrize("n,d", [(30, 8), (7, 64)])  # n > d uses the d x d Gram, n < d the n x n
def test_pairwise_matches_brute_force_lower_triangle(n, d):
    E = _unit(np.random.default_rng(1).normal(size=(n, d)))
    full = E @ E.T
    vals = full[np.tril_indices(n, k=-1)]
    np.testing.assert_allclose(np.sort(sim.pairwise_values(E)), np.sort(vals), atol=1e-12)
    st = sim.pairwise_stats({"c": E}).iloc[0]
    assert st["mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert st["std"] == pytest.approx(vals.std(), abs=1e-9)


def test_sample_pairs_covers_every_pair_uniformly():
    E = _unit(np.random.default_rng(2).normal(size=(6, 16)))
    vals = sim.pairwise_values(E)
    draws = sim.sample_pairs(E, 30_000, np.random.default_rng(0))
    uniq, counts = np.unique(np.round(draws, 9), return_counts=True)
    np.testing.assert_allclose(uniq, np.sort(np.round(vals, 9)))
    assert counts.min() > 0.8 * 30_000 / 15  # 15 pairs, each drawn ~2000 times


def test_pooled_resample_sizes_and_seed():
    rng = np.random.default_rng(3)
    data = {"a": _cluster(rng, 4, 8, 1.0), "b": _cluster(rng, 30, 8, 1.0), "c": _cluster(rng, 1, 8, 1)}
    pooled = sim.pooled_resample(data, n_values=100, seed=5)
    assert pooled.groupby("wnid").size().to_dict() == {"a": 6, "b": 100}  # min(#pairs, 100)
    again = sim.pooled_resample(data, n_values=100, seed=5)
    pd.testing.assert_frame_equal(pooled, again)
    assert not np.array_equal(pooled["similarity"], sim.pooled_resample(data, seed=6)["similarity"])
    other = {"a": data["a"], "b": data["b"][:10]}
    assert sim.common_resample_sizes(data, other, cap=40) == {"a": 6, "b": 40}


# ---------------------------------------------------------------- sampling

def _table(n_per_class=(30, 5)):
    rows = [(f"{w}_{i:03d}", w) for w, n in zip(["n001", "n002"], n_per_class) for i in range(n)]
    return pd.DataFrame(rows, columns=["image_key", "wnid"])


def test_sample_per_class_reproducible_seeded_and_order_free():
    df = _table()
    s0 = sim.sample_per_class(df, n=10, seed=0)
    assert s0.groupby("wnid").size().to_dict() == {"n001": 10, "n002": 5}
    shuffled = df.sample(frac=1, random_state=7)
    pd.testing.assert_frame_equal(s0, sim.sample_per_class(shuffled, n=10, seed=0))
    s1 = sim.sample_per_class(df, n=10, seed=1)
    assert set(s0["image_key"]) != set(s1["image_key"])
    assert s0.attrs["sample_seed"] == 0
    # nested in n and independent of the other classes
    assert set(s0["image_key"]) <= set(sim.sample_per_class(df, n=20, seed=0)["image_key"])
    only1 = sim.sample_per_class(df[df.wnid == "n001"], n=10, seed=0)
    assert only1["image_key"].tolist() == s0.loc[s0.wnid == "n001", "image_key"].tolist()
    # not simply the first n keys
    assert s0.loc[s0.wnid == "n001", "image_key"].tolist() != [f"n001_{i:03d}" for i in range(10)]


def test_sample_per_class_paper_first_n_and_errors():
    df = _table().iloc[::-1]
    first = sim.sample_per_class(df, n=3, paper_first_n=True)
    assert set(first.loc[first.wnid == "n001", "image_key"]) == {"n001_029", "n001_028", "n001_027"}
    with pytest.raises(ValueError, match="duplicates"):
        sim.sample_per_class(pd.concat([df, df.head(1)]), n=3)


# ---------------------------------------------------------------- comparison

def test_bootstrap_means_formula_matches_explicit_resample():
    E = _unit(np.random.default_rng(4).normal(size=(6, 5)))
    rng = np.random.default_rng(0)
    got = sim.bootstrap_means(E, 50, rng)
    W = np.random.default_rng(0).multinomial(6, np.full(6, 1 / 6), size=50)
    for b in range(50):
        idx = np.repeat(np.arange(6), W[b])
        G = E[idx] @ E[idx].T
        same = idx[:, None] == idx[None, :]
        expected = G[~same].mean() if (~same).any() else np.nan
        assert got[b] == pytest.approx(expected, abs=1e-12)


def test_compare_classes_detects_known_differences_both_methods():
    rng = np.random.default_rng(5)
    d = 32
    centers = {w: rng.normal(size=d) for w in ("lo", "hi", "eq", "tiny")}
    a = {"lo": _cluster(rng, 40, d, 3.0, centers["lo"]), "hi": _cluster(rng, 40, d, 0.5, centers["hi"]),
         "eq": _cluster(rng, 40, d, 1.0, centers["eq"]), "tiny": _cluster(rng, 3, d, 1.0),
         "only_a": _cluster(rng, 10, d, 1.0)}
    b = {"lo": _cluster(rng, 40, d, 0.5, centers["lo"]), "hi": _cluster(rng, 40, d, 3.0, centers["hi"]),
         "eq": _cluster(rng, 40, d, 1.0, centers["eq"]), "tiny": _cluster(rng, 30, d, 1.0)}
    for method in ("bootstrap", "paper"):
        cmp = sim.compare_classes(a, b, method=method, n_boot=400, seed=0).set_index("wnid")
        assert list(cmp.index) == ["eq", "hi", "lo", "tiny"]
        assert not cmp.loc["tiny", "tested"] and np.isnan(cmp.loc["tiny", "lcb"])  # 3 pairs < 7
        assert cmp.loc["lo", "significantly_lower"] and not cmp.loc["lo", "significantly_higher"]
        assert cmp.loc["hi", "significantly_higher"] and not cmp.loc["hi", "significantly_lower"]
        assert cmp.loc["eq", "lcb"] < cmp.loc["eq", "delta"] < cmp.loc["eq", "ucb"]
        s = sim.summarize_comparison(cmp.reset_index())
        assert (s["n_common"], s["n_tested"], s["n_lower"], s["n_higher"]) == (4, 3, 1, 1)
        assert s["share_delta_negative"] == pytest.approx(
            (cmp.loc[["eq", "hi", "lo"], "delta"] < 0).mean())


def test_bootstrap_interval_wider_than_pairs_as_independent_and_covers():
    """Pairs share images, so the paper's bound is too narrow; the image bootstrap covers the
    true delta (0 here: same distribution) in most classes."""
    rng = np.random.default_rng(6)
    d, n_cls = 16, 40
    centers = [rng.normal(size=d) for _ in range(n_cls)]
    a = {f"c{i}": _cluster(rng, 25, d, 2.0, centers[i]) for i in range(n_cls)}
    b = {f"c{i}": _cluster(rng, 25, d, 2.0, centers[i]) for i in range(n_cls)}
    boot = sim.compare_classes(a, b, "bootstrap", n_boot=300, seed=1)
    paper = sim.compare_classes(a, b, "paper")
    assert ((boot["ucb"] - boot["lcb"]) > (paper["ucb"] - paper["lcb"])).mean() > 0.9
    covered = ((boot["lcb"] <= 0) & (boot["ucb"] >= 0)).mean()
    assert covered >= 0.85
    again = sim.compare_classes(a, b, "bootstrap", n_boot=300, seed=1)
    pd.testing.assert_frame_equal(boot, again)
    with pytest.raises(ValueError, match="method"):
        sim.compare_classes(a, b, method="t-test")


def test_spearman_and_group_by_class():
    rho, p, n = sim.spearman([1, 2, 3, 4, np.nan], [10, 20, 30, 35, 1])
    assert (rho, n) == (1.0, 4)
    groups = sim.group_by_class(np.arange(10.0)[:, None], ["b", "a"] * 5)
    assert list(groups) == ["a", "b"] and groups["a"].ravel().tolist() == [1, 3, 5, 7, 9]


# ---------------------------------------------------------------- cached embeddings

class _FakeEncoder:
    """Embeds an image as its mean colour (deterministic), counting the images it saw."""

    name = "fake-colour-v1"
    dim = 3

    def __init__(self):
        self.n_embedded = 0

    def preprocess(self, image):
        import torch

        return torch.tensor(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)) + 1.0)

    def embed_images(self, batch):
        self.n_embedded += len(batch)
        x = batch.numpy()
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_embed_dataset_caches_and_resumes(tmp_path):
    from PIL import Image

    from laionet.datasets import iter_images

    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 10, 10), (200, 100, 0)]
    paths = []
    for i, c in enumerate(colors):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (4, 4), c).save(paths[-1])
    df = pd.DataFrame({"image_key": [f"k{i}" for i in range(5)], "path": map(str, paths)})
    enc = _FakeEncoder()
    first = sim.embed_dataset(enc, iter_images(df.head(3)), tmp_path / "cache", "toy",
                              batch_size=2, shard_size=2, progress=False)
    assert enc.n_embedded == 3 and first.emb.shape == (3, 3)
    full = sim.embed_dataset(enc, iter_images(df), tmp_path / "cache", "toy", batch_size=2,
                             progress=False)
    assert enc.n_embedded == 5  # only the two new images
    np.testing.assert_allclose(full.emb[:3], first.emb, atol=1e-3)  # float16 cache, renormalised
    np.testing.assert_allclose(np.linalg.norm(full.emb, axis=1), 1, atol=1e-6)
    again = sim.embed_dataset(enc, [], tmp_path / "cache", "toy", keys=df["image_key"][::-1])
    assert enc.n_embedded == 5 and list(again.keys) == [f"k{i}" for i in range(4, -1, -1)]
    np.testing.assert_allclose(again.emb[::-1], full.emb)
    by = full.by_class(pd.Series(["x", "y", "x", "y", "x"], index=df["image_key"]))
    assert {k: len(v) for k, v in by.items()} == {"x": 3, "y": 2}
    with pytest.raises(KeyError, match="not among the images read"):
        sim.embed_dataset(enc, [], tmp_path / "cache", "toy", keys=["k0", "nope"], progress=False)
