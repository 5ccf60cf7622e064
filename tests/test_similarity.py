"""Intra-class similarity: known answers on hand-built embeddings, sampling, CIs, stored image
embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from laionet.jobs import image_embeddings as emb_mod
from laionet.method import similarity as sim


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
    st = sim.pairwise_stats({"c": E}).iloc[0]
    assert st["mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert st["std"] == pytest.approx(vals.std(), abs=1e-9)


def test_sample_pairs_covers_every_pair_uniformly():
    E = _unit(np.random.default_rng(2).normal(size=(6, 16)))
    vals = (E @ E.T)[np.tril_indices(len(E), k=-1)]
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
    rho, _, n = sim.spearman([1, 2, 3, 4, np.nan], [10, 20, 30, 35, 1])
    assert (rho, n) == (1.0, 4)
    groups = sim.group_by_class(np.arange(10.0)[:, None], ["b", "a"] * 5)
    assert list(groups) == ["a", "b"] and groups["a"].ravel().tolist() == [1, 3, 5, 7, 9]


# ---------------------------------------------------------------- stored embeddings

def test_embed_dataset_stores_and_resumes(tmp_path, colour_encoder):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 10, 10), (200, 100, 0)]
    df = pd.DataFrame({"image_key": [f"k{i}" for i in range(5)],
                       "path": _images(tmp_path, colors, range(5))})
    enc = colour_encoder()
    store = emb_mod.image_store(tmp_path / "cache", "toy", enc.name)
    first = emb_mod.embed_dataset(enc, emb_mod.read_files(df.head(3)), store, batch_size=2,
                                  shard_size=2, progress=False)
    assert enc.n == 3 and first.emb.shape == (3, 3)
    full = emb_mod.embed_dataset(enc, emb_mod.read_files(df), store, batch_size=2, progress=False)
    assert enc.n == 5  # only the two new images
    np.testing.assert_allclose(full.emb[:3], first.emb, atol=1e-6)  # float32 store, renormalised
    np.testing.assert_allclose(np.linalg.norm(full.emb, axis=1), 1, atol=1e-6)
    keys = df["image_key"][::-1].tolist()
    again = emb_mod.embed_dataset(enc, emb_mod.read_files(df), emb_mod.image_store(
        tmp_path / "cache", "toy", enc.name), keys=keys, progress=False)  # reopened from disk
    assert enc.n == 5 and list(again.keys) == keys
    np.testing.assert_allclose(again.emb[::-1], full.emb)
    by = full.by_class(pd.Series(["x", "y", "x", "y", "x"], index=df["image_key"]))
    assert {k: len(v) for k, v in by.items()} == {"x": 3, "y": 2}
    with pytest.raises(KeyError, match="not among the images read"):
        emb_mod.embed_dataset(enc, emb_mod.read_files(df), store, keys=["k0", "nope"],
                              progress=False)


def test_an_image_replaced_in_place_is_embedded_again(tmp_path, colour_encoder):
    """Issue 13 item 3: a val folder whose files are replaced in place (same names) must not
    give the old embeddings: the store is keyed by the file's bytes, not its name."""
    from PIL import Image

    from laionet.sources import imagenet as ds

    val = tmp_path / "val"
    names = [ds.VAL_NAME.format(i) for i in (1, 2)]
    for n, c in zip(names, [(255, 0, 0), (0, 255, 0)]):
        val.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4), c).save(val / n, format="JPEG")
    table = pd.DataFrame({"image_key": names, "wnid": ["a", "a"],
                          "path": [str(val / n) for n in names]})
    enc = colour_encoder()
    embed = emb_mod.Embedder(enc, tmp_path / "c", progress=False)
    before = embed(table, emb_mod.ImageSource.imagenet_val())
    Image.new("RGB", (4, 4), (0, 0, 255)).save(val / names[0], format="JPEG")  # same name
    after = embed(table, emb_mod.ImageSource.imagenet_val())
    assert enc.n == 3  # only the replaced file is embedded again
    assert after.emb[0] @ before.emb[0] < 0.9 and after.emb[0][2] > after.emb[0][0]
    np.testing.assert_array_equal(after.emb[1], before.emb[1])


def test_an_undecodable_image_stops_stage_05_saying_how_to_skip_it(tmp_path, colour_encoder,
                                                                   downloads):
    """Issue 13: the advice names a parameter notebook 05 has (on_error, default 'raise'); with
    'skip' the image is left out and listed, from downloads and from files alike."""
    from PIL import Image

    from laionet.pipeline.params import read_parameters

    assert read_parameters(Path(__file__).resolve().parents[1] / "notebooks" /
                           "05_intra_class_similarity.py")["on_error"].default == "raise"
    folder = downloads(tmp_path / "dl", {1: Image.new("RGB", (4, 4), (200, 0, 0)),
                                         2: b"not an image", 3: Image.new("RGB", (4, 4), (0, 0, 9))})
    sample = pd.DataFrame({"image_key": [1, 2, 3], "wnid": ["w"] * 3})
    source = emb_mod.ImageSource.laion(folder)
    with pytest.raises(OSError, match=r"cannot decode image 2.*-p 05.on_error skip"):
        emb_mod.Embedder(colour_encoder(), tmp_path / "c", progress=False)(sample, source)
    e = emb_mod.Embedder(colour_encoder(), tmp_path / "c", progress=False, on_error="skip")(sample, source)
    assert list(e.keys) == [1, 3] and list(e.skipped) == [2]
    assert e.skipped[2].startswith("undecodable")


# ---------------------------------------------------------------- datasets compared, the study

def test_compare_classes_takes_per_class_tables_with_the_paper_interval():
    """B19 compares a per-image value (image-to-synset similarity) class by class: the same
    comparison, from per-class tables (``value_stats``) instead of embeddings."""
    rng = np.random.default_rng(7)
    a = {"x": _cluster(rng, 12, 8, 2.0), "y": _cluster(rng, 9, 8, 1.0), "only_a": _cluster(rng, 5, 8, 1)}
    b = {"x": _cluster(rng, 10, 8, 0.5), "y": _cluster(rng, 11, 8, 1.0)}
    from_tables = sim.compare_classes(sim.pairwise_stats(a), sim.pairwise_stats(b), "paper")
    pd.testing.assert_frame_equal(from_tables, sim.compare_classes(a, b, "paper"))
    with pytest.raises(ValueError, match="method='paper'"):
        sim.compare_classes(sim.pairwise_stats(a), sim.pairwise_stats(b))
    values = pd.DataFrame({"wnid": ["p", "p", "p", "q"], "v": [1.0, 2.0, 6.0, 4.0]})
    st = sim.value_stats(values, "v").set_index("wnid")
    assert st.loc["p", ["n_images", "n_pairs", "mean"]].tolist() == [3, 3, 3.0]
    assert st.loc["p", "std"] == pytest.approx(np.std([1, 2, 6], ddof=1))
    cmp = sim.compare_classes(st.reset_index(), st.reset_index(), "paper", min_pairs=2)
    assert cmp["tested"].tolist() == [True, False] and cmp.loc[0, "delta"] == 0
    h = np.hypot(*[1.96 * np.std([1, 2, 6], ddof=1) / np.sqrt(2)] * 2)
    assert cmp.loc[0, "ucb"] == pytest.approx(h)


def _images(tmp_path, colors, keys, modes=None):
    from PIL import Image

    paths = []
    for i, (c, k) in enumerate(zip(colors, keys)):
        paths.append(tmp_path / f"img_{k}.png")
        im = Image.new("RGB", (4, 4), c)
        if modes and modes[i] != "RGB":
            im = im.convert(modes[i])
        im.save(paths[-1])
    return [str(p) for p in paths]


def test_embed_sample_from_files_and_from_downloads(tmp_path, colour_encoder, downloads):
    cols = [(255, 0, 0), (250, 10, 0), (0, 255, 0), (0, 250, 20), (9, 9, 200)]
    files = pd.DataFrame({"image_key": [f"f{i}" for i in range(5)], "wnid": list("aabbb"),
                          "path": _images(tmp_path, cols, range(5), ["RGB", "RGB", "L", "RGB", "RGB"])})
    enc = colour_encoder()
    embed = emb_mod.Embedder(enc, tmp_path / "c", progress=False)
    e = embed(files, emb_mod.ImageSource.imagenet_val())
    assert list(e.keys) == list(files["image_key"]) and e.dataset == emb_mod.IMAGENET_VAL
    assert {w: len(E) for w, E in e.by_class().items()} == {"a": 2, "b": 3}
    rgb = embed(files, emb_mod.ImageSource("other", paper_rgb_only=True))
    assert rgb.skipped == {"f2": "non-RGB mode L"} and "f2" not in list(rgb.keys)
    assert {w: len(E) for w, E in rgb.by_class().items()} == {"a": 2, "b": 2}

    from PIL import Image

    dl = downloads(tmp_path / "dl", {k: Image.new("RGB", (4, 4), (k % 256, 0, 9))
                                     for k in (100, 200, 300)})
    rows = pd.DataFrame({"image_key": ["300", "100", "200"], "wnid": ["p", "q", "p"]})  # str, as 05 saves
    n0 = enc.n
    d = embed(rows, emb_mod.ImageSource.laion(dl))
    assert d.dataset == emb_mod.LAION and list(d.keys) == [300, 100, 200] and enc.n == n0 + 3
    assert {w: len(E) for w, E in d.by_class().items()} == {"p": 2, "q": 1}
    assert (tmp_path / "c" / emb_mod.LAION / enc.name).is_dir()
    again = embed(rows.iloc[::-1], emb_mod.ImageSource.laion(dl))
    assert enc.n == n0 + 3 and list(again.keys) == [200, 100, 300]  # all stored: none embedded
    with pytest.raises(KeyError, match="not among the images read"):
        embed(pd.DataFrame({"image_key": [400], "wnid": ["p"]}), emb_mod.ImageSource.laion(dl))


def _toy_study_inputs(tmp_path):
    rng = np.random.default_rng(0)
    base = {"a": (200, 30, 30), "b": (30, 200, 30)}
    frames = {}
    for name, spread, keys in (("LAIONet", 60, range(100, 112)), ("ImageNet", 10, range(12))):
        wnids = ["a", "b"] * 6
        cols = [tuple(int(v) for v in np.clip(np.array(base[w]) + rng.normal(0, spread, 3), 0, 255))
                for w in wnids]
        frames[name] = pd.DataFrame({"image_key": list(keys), "wnid": wnids,
                                     "path": _images(tmp_path, cols, [f"{name}{k}" for k in keys])})
    return frames


def test_run_study_writes_stage_05_products_and_reads_back(tmp_path, colour_encoder):
    from laionet.jobs import intra_class as ic

    frames = _toy_study_inputs(tmp_path)
    samples = ic.draw_samples(frames, 4, seed=0)
    assert samples["LAIONet"].groupby("wnid").size().to_dict() == {"a": 4, "b": 4}
    sources = {"LAIONet": emb_mod.ImageSource("toy_laionet"), "ImageNet": emb_mod.ImageSource("toy_val")}
    encoders = ic.encoder_specs(["demo-tower:/x.safetensors", " timm:convnext_base:/y "])
    assert encoders == {"demo tower": "demo-tower:/x.safetensors", "timm convnext_base": "timm:convnext_base:/y"}
    loaded = []
    study = ic.run_study(encoders, samples, sources, tmp_path / "cache", n_boot=50, seed=1,
                         load=lambda spec, device: loaded.append(spec) or colour_encoder())
    assert loaded == list(encoders.values()) and study.main == "demo tower"
    assert list(study.summary["encoder"]) == list(encoders) and study.summary["n_common"].tolist() == [2, 2]
    assert list(study.class_stats.columns)[-2:] == ["encoder", "dataset"]
    assert list(study.pooled.columns) == ["wnid", "similarity", "encoder", "dataset"]
    # the same numbers as the parts by hand
    embed = emb_mod.Embedder(colour_encoder(), tmp_path / "cache")
    a, b = (embed(samples[d], sources[d]).by_class() for d in ("LAIONet", "ImageNet"))
    pd.testing.assert_frame_equal(study.comparisons["demo tower"],
                                  sim.compare_classes(a, b, n_boot=50, seed=1))
    assert study.comparisons["demo tower"].attrs["method"] == "bootstrap"
    pd.testing.assert_frame_equal(study.comparison[study.comparison["encoder"] == "demo tower"]
                                  .drop(columns="encoder"), sim.compare_classes(a, b, n_boot=50, seed=1))
    pd.testing.assert_frame_equal(
        study.pooled[(study.pooled["encoder"] == "demo tower") & (study.pooled["dataset"] == "LAIONet")]
        .drop(columns=["encoder", "dataset"]).reset_index(drop=True),
        sim.pooled_resample(a, 100, 1, classes=sorted(set(a) & set(b))))
    assert set(study.encoder_pooled("demo tower")) == {"LAIONet", "ImageNet"}

    study.write(tmp_path / "out")
    for name in ic.TABLES:
        assert (tmp_path / "out" / f"{name}.parquet").is_file()
    assert json.loads((tmp_path / "out" / ic.ENCODERS).read_text()) == encoders
    back = ic.read_samples(tmp_path / "out")
    assert back["LAIONet"]["image_key"].dtype == "int64" and list(back["LAIONet"].columns) == ["image_key", "wnid"]
    assert back["ImageNet"]["image_key"].tolist() == samples["ImageNet"]["image_key"].astype(str).tolist()
    assert "path" in back["ImageNet"].columns
    assert ic.main_encoder("", tmp_path / "out") == ("demo tower", "demo-tower:/x.safetensors")
    assert ic.main_encoder("timm:vit_b:/z", tmp_path / "out") == ("timm vit_b", "timm:vit_b:/z")
    with pytest.raises(ValueError, match="no image encoder"):
        ic.encoder_specs(["", " "])
    with pytest.raises(ValueError, match="share the label"):
        ic.encoder_specs(["timm:a:/1", "timm:a:/2"])


def test_study_side_tables(tmp_path):
    from laionet.jobs import intra_class as ic

    man = pd.DataFrame({"key": [5, 6, 7], "wnid": ["a", "b", "a"], "status": ["success", "failed", "success"]})
    assert ic.downloaded_images(man).to_dict("list") == {"image_key": [5, 7], "wnid": ["a", "a"]}
    stats = pd.DataFrame({"wnid": ["a", "b", "a"], "mean": [0.5, 0.25, 0.9],
                          "encoder": ["e", "e", "other"], "dataset": ["LAIONet"] * 3})
    f = ic.frequency_vs_similarity(stats, pd.Series(["a", "a", "a", "b"]), "e")
    assert f.to_dict("list") == {"wnid": ["a", "b"], "relative_frequency": [0.75, 0.25], "mean": [0.5, 0.25]}
    assert ic.recall_vs_delta(tmp_path / "nothing", pd.DataFrame(), "e") is None
    res = pd.DataFrame({"dataset": "LAIONet", "model": "m", "wnid": ["a"] * 3 + ["b"] * 3,
                        "correct1": pd.array([True, False, True, True, True, None], dtype="boolean")})
    res.to_parquet(tmp_path / "results_laionet.parquet")
    cmp = pd.DataFrame({"wnid": ["a", "b"], "delta": [-0.1, 0.2], "tested": [True, False], "encoder": "e"})
    r = ic.recall_vs_delta(tmp_path, cmp, "e", min_images=2)
    assert r["recall"].tolist() == pytest.approx([2 / 3, 1.0])
    assert r["delta"].iloc[0] == -0.1 and np.isnan(r["delta"].iloc[1])  # b untested
    assert len(ic.recall_vs_delta(tmp_path, cmp, "e", min_images=3)) == 1


def test_similarity_figures_build():
    import matplotlib.pyplot as plt

    from laionet.plots import similarity as plots

    rec = pd.DataFrame({"model": ["m1", "m1", "m2"], "wnid": ["a", "b", "a"],
                        "recall": [0.5, 0.9, 0.7], "delta": [-0.1, 0.05, np.nan]})
    props = pd.DataFrame({"reference": ["LAIONet"] * 3 + ["ImageNet"] * 3,
                          "selection_frequency": [0.73, 0.85, 0.93] * 2,
                          "share_lower": np.linspace(0.1, 0.6, 6), "share_higher": np.linspace(0.5, 0, 6)})
    curve = pd.DataFrame({"threshold": [0.0, 0.5], "mean_similarity": [0.4, 0.5], "se": [0.01, 0.02],
                          "laionet_mean_same_classes": [0.3, 0.3], "imagenet_mean_same_classes": [0.5, 0.5]})
    wide = pd.DataFrame({"model": ["m", "m"], "k": [1, 5], "LAIONet": [0.5, 0.8], "ImageNetV2-a": [0.6, 0.85],
                         "ImageNetV2-b": [0.55, 0.82], "ImageNetV2-c": [0.7, 0.9]})
    figs = [plots.recall_vs_delta_figure(rec), plots.release_proportions_figure(props),
            plots.selection_frequency_curve_figure(curve, "demo tower"), plots.release_accuracy_figure(wide)]
    assert [len(f.axes) for f in figs] == [2, 2, 1, 2]
    assert figs[0].axes[0].get_title().startswith("m1")
    for f in figs:
        plt.close(f)


def test_a_list_of_specs_resolves_to_a_list_and_fingerprints_each_file(tmp_path):
    from laionet.pipeline import stage, stages

    ckpt = tmp_path / "tower.safetensors"
    ckpt.write_bytes(b"weights")
    inp = stages.Input("image_encoders", world="image_tower", kind="specs")
    specs = [f"demo-tower:{ckpt}", "open_clip:ViT-B-32:openai"]
    got = stage.resolve_input(inp, {"image_encoders": specs}, None, "p", "05_x")
    assert got == specs
    fp = stage.input_fingerprint(inp, got, "p")
    ckpt.write_bytes(b"other weights")
    assert stage.input_fingerprint(inp, got, "p") != fp  # the checkpoint's bytes count
    one = stages.Input("image_encoder", kind="spec")
    assert stage.input_fingerprint(one, specs[0], "p") == stage.input_fingerprint(inp, specs[:1], "p")
