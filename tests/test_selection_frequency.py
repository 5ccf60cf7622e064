"""Stage 06's algorithms (laionet.method.selection_frequency, laionet.jobs.imagenetv2) on
hand-built embeddings and tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet.jobs import imagenetv2
from laionet.jobs.image_embeddings import ImageEmbeddings
from laionet.method import selection_frequency as sf
from laionet.method import similarity as sim
from laionet.sources.imagenet import imagenetv2_version

V = [v.name for v in sf.VERSIONS]  # matched-frequency, threshold0.7, top-images


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cluster(rng, n, d, spread, center):
    return _unit(center / np.linalg.norm(center) + spread * rng.normal(size=(n, d)) / np.sqrt(d))


def _groups(seed=0, d=16):
    """Two classes; spreads set so LAIONet < b < a < c < ImageNet in homogeneity."""
    rng = np.random.default_rng(seed)
    centers = {w: rng.normal(size=d) for w in ("w1", "w2")}
    spread = {"LAIONet": 3.0, V[0]: 1.5, V[1]: 1.0, V[2]: 0.5, "ImageNet": 0.3}
    return {name: {w: _cluster(rng, 30, d, s, centers[w]) for w in centers} for name, s in spread.items()}


def test_release_tables_one_row_per_reference_and_release():
    groups = _groups()
    cmps = {(r, v): sim.compare_classes(groups[r], groups[v], n_boot=100, seed=0)
            for r in sf.REFERENCES for v in V}
    comparison, props = sf.release_tables(cmps)
    assert list(zip(props["reference"], props["version"])) == [(r, v) for r in sf.REFERENCES for v in V]
    assert props["letter"].tolist() == ["b", "a", "c"] * 2
    assert props["selection_frequency"].tolist() == [0.73, 0.85, 0.93] * 2
    lai = props[props["reference"] == "LAIONet"]
    assert lai["share_lower"].tolist() == [1.0, 1.0, 1.0]  # LAIONet is the least homogeneous
    inet = props[props["reference"] == "ImageNet"]
    assert inet["share_higher"].tolist() == [1.0, 1.0, 1.0]
    one = comparison[(comparison["reference"] == "LAIONet") & (comparison["version"] == V[0])]
    pd.testing.assert_frame_equal(one.drop(columns=["reference", "version"]),
                                  cmps[("LAIONet", V[0])])
    assert len(comparison) == 12 and list(comparison.columns[-2:]) == ["reference", "version"]


def test_release_histograms_share_one_n_per_class():
    groups = _groups()
    groups[V[1]] = {"w1": groups[V[1]]["w1"][:4], "w2": groups[V[1]]["w2"]}  # 6 pairs in w1
    res = sf.release_histograms(groups, seed=2, cap=50)
    assert list(res) == ["LAIONet"] + V
    for values in res.values():
        assert len(values) == 6 + 50
    again = sf.release_histograms(groups, seed=2, cap=50)
    pd.testing.assert_series_equal(res["LAIONet"], again["LAIONet"])


def _pool_inputs():
    """Three releases of one class 'w'; image 'x' is in two releases (counted once)."""
    e = {"i0": [1.0, 0], "i1": [1.0, 0.1], "x": [0, 1.0], "i3": [0.6, 0.8], "i4": [1.0, 0.05]}
    emb = {}
    members = {V[0]: ["i0", "x"], V[1]: ["x", "i1", "i3"], V[2]: ["i4"]}
    for v, keys in members.items():
        emb[v] = ImageEmbeddings(np.array(keys), _unit(np.array([e[k] for k in keys])), "enc", v)
    votes = {"i0": 0.2, "x": 0.4, "i1": 0.9, "i3": 0.6, "i4": 1.0}
    rows = [(v, f"0/{k}", "w", votes[k]) for v, keys in members.items() for k in keys]
    sf_table = pd.DataFrame(rows, columns=["version", "path", "wnid", "selection_frequency"])
    sf_table["version"] = sf_table["version"].map({V[0]: "b", V[1]: "imagenetv2-threshold0.7-format-val",
                                                   V[2]: "top-images"})
    return sf_table, emb, e


def test_pool_images_counts_an_image_once_and_aligns_embeddings(tmp_path):
    sf_table, emb, e = _pool_inputs()
    sf_table.to_parquet(tmp_path / "votes.parquet")
    votes = imagenetv2.read_selection_frequencies(tmp_path / "votes.parquet")
    assert set(votes["version"]) == set(V) and votes["image_key"].iloc[0] == "i0"
    pool, vecs = sf.pool_images(votes, emb)
    assert pool["image_key"].tolist() == ["i0", "x", "i1", "i3", "i4"]
    assert pool["src"].tolist() == [V[0], V[0], V[1], V[1], V[2]]
    np.testing.assert_allclose(vecs, _unit(np.array([e[k] for k in pool["image_key"]])), rtol=1e-6)
    bad = votes.copy()
    bad.loc[bad["version"] == V[2], "image_key"] = "ghost"
    with pytest.raises(KeyError, match="no image in the release"):
        sf.pool_images(bad, emb)


def test_threshold_curve_known_answers():
    sf_table, emb, e = _pool_inputs()
    votes = sf_table.assign(image_key=sf_table["path"].str.split("/").str[1],
                            version=sf_table["version"].map(lambda x: imagenetv2_version(x).name))
    pool, vecs = sf.pool_images(votes, emb)
    lai = {"w": _unit(np.array([[1.0, 0], [0, 1.0]]))}  # mean pair similarity 0
    inet = {"w": _unit(np.array([[1.0, 0], [1.0, 0.0]]))}  # 1
    curve = sf.threshold_curve(pool, vecs, [0.0, 0.5, 0.95, 1.01], lai, inet, min_images=2)
    assert curve["threshold"].tolist() == [0.0, 0.5]  # 0.95 keeps one image, 1.01 none
    assert curve["n_images"].tolist() == [5, 3] and curve["n_classes"].tolist() == [1, 1]
    keep = [k for k in pool["image_key"] if dict(zip(pool["image_key"], pool["sf"]))[k] >= 0.5]
    E = _unit(np.array([e[k] for k in keep]))
    pairs = (E @ E.T)[np.tril_indices(len(E), k=-1)]
    assert curve["mean_similarity"].iloc[1] == pytest.approx(pairs.mean())
    assert np.isnan(curve["se"]).all()  # one class: no standard error
    assert curve["share_laionet_lower"].tolist() == [1.0, 1.0]
    assert curve["laionet_mean_same_classes"].tolist() == pytest.approx([0, 0], abs=1e-12)
    assert curve["imagenet_mean_same_classes"].tolist() == pytest.approx([1, 1])
    assert list(curve.columns) == list(sf.EMPTY_CURVE)


def test_selection_frequency_curve_without_votes_is_empty(tmp_path):
    for path in (None, "", tmp_path / "absent.parquet"):
        curve = imagenetv2.selection_frequency_curve(path, {}, [0.0, 0.5])
        assert len(curve) == 0 and list(curve.columns) == list(sf.EMPTY_CURVE)


class _Step:
    def __init__(self, current):
        self.is_current, self.n_done = current, 0

    def current(self):
        return self.is_current

    def done(self, **info):
        self.n_done += 1
        self.is_current = True


def test_accuracy_on_releases_caches_its_sub_step(tmp_path, monkeypatch, capsys):
    assert len(imagenetv2.accuracy_on_releases("", tmp_path, {}, tmp_path, _Step(False))) == 0
    assert len(imagenetv2.accuracy_on_releases("demo:/m", tmp_path, {}, tmp_path, _Step(False))) == 0
    assert "missing (run stage 04)" in capsys.readouterr().out

    def results(dataset, wnids, correct):
        return pd.DataFrame({"image_key": [f"{dataset}{i}" for i in range(len(wnids))], "dataset": dataset,
                             "model": "m", "wnid": wnids, "top5": [[w] for w in wnids],
                             "correct1": correct, "correct5": correct})

    results("LAIONet", ["a", "a", "b"], [True, False, True]).to_parquet(tmp_path / "results_laionet.parquet")
    calls = []

    def fake_evaluate(classifiers, v2, files, device, batch_size):
        calls.append(classifiers)
        for v in sf.VERSIONS:  # class c is outside LAIONet's classes: projected away
            results(f"ImageNetV2-{v.letter}", ["a", "b", "c"], [True, True, False]).to_parquet(files[v.name])

    monkeypatch.setattr(imagenetv2, "evaluate_releases", fake_evaluate)
    step = _Step(False)
    (tmp_path / "out").mkdir()
    acc = imagenetv2.accuracy_on_releases("demo:/m", tmp_path, {}, tmp_path / "out", step)
    assert calls == ["demo:/m"] and step.n_done == 1
    assert set(acc["dataset"]) == {"LAIONet", "ImageNetV2-a", "ImageNetV2-b", "ImageNetV2-c"}
    assert set(acc["weighting"]) == {"equal"}
    top1 = acc[acc["k"] == 1].set_index("dataset")["accuracy"]
    assert top1["LAIONet"] == pytest.approx(0.75) and top1["ImageNetV2-b"] == pytest.approx(1.0)
    again = imagenetv2.accuracy_on_releases("demo:/m", tmp_path, {}, tmp_path / "out", step)
    assert calls == ["demo:/m"]  # current: not evaluated again
    pd.testing.assert_frame_equal(acc, again)
    (tmp_path / "out" / f"results_imagenetv2-{V[2]}.parquet").unlink()
    imagenetv2.accuracy_on_releases("demo:/m", tmp_path, {}, tmp_path / "out", step)
    assert len(calls) == 2  # a results file went missing: evaluated again
    wide = sf.accuracy_wide(acc)
    assert list(wide.columns[:2]) == ["model", "k"] and len(wide) == len(set(acc["k"]))
    assert list(sf.accuracy_wide(acc.iloc[:0]).columns) == ["model", "k"]


def test_sources_and_release_tables(tmp_path):
    from PIL import Image

    src = imagenetv2.sources(tmp_path)
    assert src["LAIONet"].dataset == "laion" and src["LAIONet"].download_dir == tmp_path
    assert src["ImageNet"].dataset == "imagenet_val" and src["ImageNet"].download_dir is None
    assert [src[v].dataset for v in V] == [f"imagenetv2-{v}" for v in V]
    for v in sf.VERSIONS:
        for cls in ("0", "1"):
            (tmp_path / v.folder / cls).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / v.folder / cls / "x.jpeg")
    (tmp_path / "class_info.json").write_text(
        '[{"cid": 0, "wnid": "n00000001", "synset": ["a"]}, {"cid": 1, "wnid": "n00000002", "synset": ["b"]}]')
    v2 = imagenetv2.read_releases(tmp_path)
    assert list(v2) == V and set(v2[V[0]]["wnid"]) == {"n00000001", "n00000002"}
    table = sf.describe_releases(v2)
    assert table["letter"].tolist() == ["b", "a", "c"] and table["n_images"].tolist() == [2, 2, 2]
