"""Departures from the paper found by reading the code (issue 12, section 2): each test here
fails on the code before the fix."""

from __future__ import annotations

import numpy as np

from laionet.jobs import image_embeddings as emb_mod
from laionet.jobs.embedding_store import EmbeddingStore
from laionet.util.paths import project_root
from laionet.jobs import candidates as candidates_job
from laionet.jobs import imagenetv2


def test_image_embeddings_are_stored_in_float32(tmp_path):
    # Section 4.2 thresholds image-to-synset cosines to 4 decimals: float16 (~1e-3) moves them
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = emb_mod.image_store(tmp_path, emb_mod.LAION, "enc")
    store.add([1, 2, 3], x, contents=[7, 8, 9])
    back = emb_mod.image_store(tmp_path, emb_mod.LAION, "enc").get([1, 2, 3], [7, 8, 9])
    assert back.dtype == np.float32 and np.abs(back - x).max() < 1e-6  # float16: ~1e-3
    # a float16 store written by an older version is never served to a float32 run
    old = EmbeddingStore.at(tmp_path, emb_mod.IMAGENET_VAL, "enc", dtype="float16")
    old.add(["a.JPEG"], x[:1], contents=[1])
    new = emb_mod.image_store(tmp_path, emb_mod.IMAGENET_VAL, "enc")
    assert new.dtype == np.float32 and not new.contains(["a.JPEG"], [1]).any()


def test_stage02_counts_matched_and_single_label_classes_apart(tmp_path, hash_text_encoder):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from laionet.method import selection as sel
    from test_selection import LION, TEXTS, _write_world

    tiger = "n02129604"  # only in a multi-label row ("tiger" and "lion"): matched, never kept
    m01, parts = _write_world(tmp_path)
    for sub, extra in (("rows", {"wnids": [[LION, tiger]], "n_classes": pa.array([2], pa.int16()),
                                 "multi_label": [True]}),
                       ("matches", None)):
        f = m01 / sub / "part-00000.parquet"
        t = pq.read_table(f)
        base = {"part": pa.array([0], pa.int32()), "row": pa.array([5], pa.int64()),
                "key": pa.array([5], pa.int64())}
        if extra:
            add = pa.table({**base, **extra}, schema=t.schema)
        else:
            add = pa.table({"part": pa.array([0, 0], pa.int32()), "row": pa.array([5, 5], pa.int64()),
                            "key": pa.array([5, 5], pa.int64()), "lemma": ["lion", "tiger"],
                            "wnid": [LION, tiger]}, schema=t.schema)
        pq.write_table(pa.concat_tables([t, add]), f)
    enc, out = hash_text_encoder(), tmp_path / "02"
    candidates_job.build_candidates(m01, parts, pd.Series({**TEXTS, tiger: "tiger"}), enc,
                                    EmbeddingStore(tmp_path / "store", enc.name), out)
    summ = sel.summary(pd.DataFrame({"wnid": []}), candidates_job.candidate_counts(out), 0.5)
    assert (summ["n_classes_matched"], summ["n_classes_single_label"]) == (4, 3)


def test_b7_b9_use_the_papers_models_and_the_gallery_skips_web_site(tmp_path, monkeypatch):
    import pandas as pd

    from laionet.jobs import evaluation as pipeline
    from laionet.method import accuracy as aggregate

    names = ["beit-base-patch16-224", "convnext-base-224", "convnext-base-224-22k-1k",
             "convnext-tiny-224", "resnet-18", "resnet-50", "vit-base-patch16-224"]
    acc = pd.DataFrame({"model": names})  # alphabetical, as timm lists them
    assert aggregate.pick_models(acc) == ["resnet-50", "convnext-base-224",
                                          "convnext-base-224-22k-1k", "vit-base-patch16-224"]
    assert aggregate.pick_gap_model(acc) == "vit-base-patch16-224"
    # B9's gallery leaves out images the model calls web site / book jacket
    results = pd.DataFrame({
        "image_key": ["1", "2", "3", "4"], "dataset": "LAIONet", "model": "m", "wnid": "a",
        "top5": [["n06359193", "a"], ["a"], ["n07248320"], ["b", "a"]],
        "correct5": pd.array([True, True, False, True], dtype="boolean")})
    (tmp_path / "manifest.parquet").touch()
    monkeypatch.setattr(pipeline, "read_images", lambda d, keys: {k: f"im{k}" for k in keys})
    ims, ok, keys = pipeline.gallery(results, "m", "a", tmp_path, n=10)
    assert keys == ["2", "4"] and ims == ["im2", "im4"] and ok == [True, True]


def _hand_download(folder, rows, settings):
    """A download folder as ``download_laionet`` leaves it: download_input.json (with the
    settings), shards/<fp>/00000.tar and manifest.parquet; ``rows``: key -> image bytes or None
    (a failed row)."""
    import io
    import json
    import tarfile

    import pandas as pd

    shards = folder / "shards" / "fp"
    shards.mkdir(parents=True)
    (folder / "download_input.json").write_text(json.dumps(
        {"fingerprint": "fp", "n_rows": len(rows), "number_sample_per_shard": 1000,
         "settings": settings}))
    with tarfile.open(shards / "00000.tar", "w") as tf:
        for key, data in rows.items():
            if data is not None:
                info = tarfile.TarInfo(f"{key:09d}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (shards / "00000_stats.json").write_text("{}")
    pd.DataFrame({"key": list(rows), "wnid": "n02125311",
                  "status": ["success" if d is not None else "failed_to_download"
                             for d in rows.values()],
                  "shard": "00000", "member": [f"{k:09d}" for k in rows]}).to_parquet(
        folder / "manifest.parquet")


def test_stages_07_09_reuse_stage03_downloads_and_its_settings(tmp_path, monkeypatch):
    import pandas as pd

    from laionet.jobs import download as dl

    settings = {"image_size": 384, "resize_mode": "keep_ratio", "resize_only_if_bigger": False,
                "encode_format": "jpg"}
    stage03 = tmp_path / "03"  # LAIONet rows 0, 1 and a failed row 4
    _hand_download(stage03, {0: b"zero", 1: b"one", 4: None}, settings)
    calls = []

    def fake_download(table, out_dir, **kw):  # records what 07/09 would fetch, and how
        calls.append((sorted(table["key"]), kw))
        _hand_download(out_dir, {int(k): b"new%d" % k for k in table["key"]}, settings)
        return dl.load_manifest(out_dir)

    monkeypatch.setattr(dl, "download_laionet", fake_download)
    table = pd.DataFrame({"key": [0, 1, 2, 3, 4], "wnid": "n02125311", "URL": "http://x/y.jpg"})
    man, dirs = dl.download_beyond(table, stage03, tmp_path / "cache", processes_count=1)
    assert len(calls) == 1 and calls[0][0] == [2, 3]  # only the rows stage 03 never had
    assert {k: calls[0][1][k] for k in settings} == settings  # ... with stage 03's settings
    assert dirs[0] == stage03 and dirs[1].is_relative_to(tmp_path / "cache")
    assert man.set_index("key")["status"].to_dict() == {0: "success", 1: "success", 2: "success",
                                                        3: "success", 4: "failed_to_download"}
    assert dict(dl.read_downloads(dirs, [0, 1, 2, 3, 4])) == {
        0: b"zero", 1: b"one", 2: b"new2", 3: b"new3"}  # 03's bytes, 03's failure kept
    src = emb_mod.ImageSource.laion(dirs)
    assert src.download_dir == dirs


def test_stage01_lists_the_classes_no_unique_lemma_reaches_and_why():
    from laionet.sources import classes as lc

    true = lc.classes_without_unique_lemma(lc.class_table(head_source="timm")).set_index("wnid")
    assert {"n02012849", "n03126707"} <= set(true.index)  # crane: the bird and the machine
    assert true.loc["n02012849", "why"] == "'crane' is also n03126707 (crane)"
    authors = lc.classes_without_unique_lemma(
        lc.class_table(authors_class_list=True, head_source="timm"))
    assert "n02012849" not in set(authors["wnid"]) and len(authors) == len(true) - 2


def test_stage04_resolution_parity_resizes_imagenet_like_the_download(tmp_path):
    import io

    import pandas as pd
    from PIL import Image

    from laionet.jobs import evaluation as pipeline
    from laionet.jobs import inference

    Image.new("RGB", (500, 375), (200, 30, 30)).save(tmp_path / "v.JPEG")
    val = pd.DataFrame({"image_key": ["v.JPEG"], "wnid": ["n1"], "path": [str(tmp_path / "v.JPEG")]})
    full = pipeline.imagenet_records(val)  # the paper: the file at full size
    assert inference.decode_image(full[0][2]).size == (500, 375)
    settings = {"image_size": 256, "resize_mode": "keep_ratio", "resize_only_if_bigger": False,
                "encode_format": "jpg"}
    same = pipeline.imagenet_records(val, resize=settings)  # as stage 03 stored LAIONet
    data = same[0][2].read_bytes()
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert inference.decode_image(data).size == (341, 256)


def test_b13_projects_imagenetv2_onto_laionets_keys(tmp_path):
    import pandas as pd
    import pytest

    from laionet.method import selection_frequency as sf

    def results(dataset, wnids, correct):
        return pd.DataFrame({"image_key": [f"{dataset}{i}" for i in range(len(wnids))],
                             "dataset": dataset, "model": "m", "wnid": wnids,
                             "top5": [[w] for w in wnids], "correct1": correct, "correct5": correct})

    results("LAIONet", ["a", "b"], [True, True]).to_parquet(tmp_path / "laionet.parquet")
    files = imagenetv2.release_results_files(tmp_path)
    for v in sf.VERSIONS:  # c: a LAIONet key (a caption matched it) without LAIONet results
        results(f"ImageNetV2-{v.letter}", ["a", "b", "c", "d"], [True, True, False, False]
                ).to_parquet(files[v.name])
    acc = imagenetv2.release_accuracy(tmp_path / "laionet.parquet", files, keys=["a", "b", "c"])
    top1 = acc[acc["k"] == 1].set_index("dataset")["accuracy"]
    assert top1["ImageNetV2-b"] == pytest.approx(2 / 3)  # not 1.0 (a, b only); d is no key


def test_b19_resamples_laionet_to_50_per_class_and_tests_each_class():
    import pandas as pd

    from laionet.method import frontier as fr
    from laionet.method import similarity as sim

    rng = np.random.default_rng(0)
    lai = pd.DataFrame({"wnid": ["a"] * 8 + ["b"] * 120 + ["c"] * 3 + ["z"] * 9,
                        "image_similarity": np.r_[rng.normal(0.2, 0.01, 8), rng.normal(0.35, 0.01, 120),
                                                  rng.normal(0.3, 0.01, 3), rng.normal(0.3, 0.01, 9)]})
    inet = pd.DataFrame({"wnid": ["a"] * 50 + ["b"] * 50 + ["c"] * 50,
                         "image_similarity": np.r_[rng.normal(0.3, 0.01, 50), rng.normal(0.3, 0.01, 50),
                                                   rng.normal(0.3, 0.01, 50)]})
    sample = fr.relevance_resample(lai, inet, 50, seed=1)
    assert sample["wnid"].value_counts().to_dict() == {"a": 50, "b": 50, "c": 50}  # z: no ImageNet
    again = fr.relevance_resample(lai, inet, 50, seed=1)
    assert sample.equals(again)
    cmp = sim.compare_classes(sim.value_stats(lai, "image_similarity"),
                              sim.value_stats(inet, "image_similarity"), "paper").set_index("wnid")
    assert cmp["tested"].to_dict() == {"a": True, "b": True, "c": False}  # c: 3 < 7 images
    assert cmp.loc["a", "significantly_lower"] and cmp.loc["b", "significantly_higher"]
    s = fr.relevance_summary(lai, inet, comparison=cmp.reset_index())["delta_test"]
    assert (s["n_tested"], s["n_lower"], s["n_higher"]) == (2, 1, 1)


def test_b4_counts_classes_significantly_lower_and_higher():
    import pandas as pd

    from laionet.method import accuracy as aggregate

    def rows(dataset, wnid, n, n_ok):
        return pd.DataFrame({"image_key": [f"{dataset}{wnid}{i}" for i in range(n)],
                             "dataset": dataset, "model": "zs", "wnid": wnid,
                             "correct1": pd.array([i < n_ok for i in range(n)], dtype="boolean"),
                             "correct5": pd.array([True] * n, dtype="boolean")})

    res = pd.concat([rows("LAIONet", "a", 100, 10), rows("ImageNet", "a", 50, 45),   # lower
                     rows("LAIONet", "b", 100, 95), rows("ImageNet", "b", 50, 10),   # higher
                     rows("LAIONet", "c", 100, 50), rows("ImageNet", "c", 50, 26),   # neither
                     rows("LAIONet", "d", 10, 5)], ignore_index=True)                # one side
    t = aggregate.per_class_significance(aggregate.per_class_recalls(res), "zs").set_index("k")
    assert t.loc[1, ["n_classes", "n_lower", "n_higher"]].tolist() == [3, 1, 1]
    assert t.loc[1, "share_delta_positive"] == 1 / 3
    assert t.loc[5, ["n_lower", "n_higher"]].tolist() == [0, 0]


def test_b2_gallery_draws_the_lemmas_images_in_every_similarity_bin(tmp_path):
    import pandas as pd
    from PIL import Image

    from laionet.method import frontier as fr
    from laionet.plots import frontier as frp

    cand = pd.DataFrame({"key": range(12), "wnid": ["n02125311"] * 10 + ["n02129165"] * 2,
                         "URL": "u", "similarity": np.r_[np.linspace(0.1, 0.9, 10), 0.5, 0.6],
                         "lemmas": [["puma"]] * 8 + [["cougar"]] * 2 + [["puma"]] * 2})
    rows = fr.lemma_gallery_rows(cand, "n02125311", "puma", n_bins=2, per_bin=3, seed=0)
    assert rows["bin"].value_counts().to_dict() == {0: 3, 1: 3}  # both bins, low and high
    assert set(rows["key"]) <= set(range(8))  # only the class's puma rows
    assert (rows["similarity"] >= rows["bin_lo"]).all() and (rows["similarity"] <= rows["bin_hi"]).all()
    # stage 07 passes stage 02's candidates file (never loaded whole): the same rows
    cand.to_parquet(tmp_path / "candidates.parquet")
    from_file = fr.lemma_gallery_rows(candidates_job.CandidateFiles(tmp_path / "candidates.parquet"),
                                      "n02125311", "puma",
                                      n_bins=2, per_bin=3, seed=0)
    pd.testing.assert_frame_equal(from_file, rows)
    images = {int(k): Image.new("RGB", (8, 8)) for k in rows["key"]}
    fig = frp.lemma_gallery_figure(rows, images, threshold=0.5)
    assert sum(bool(ax.images) for ax in fig.axes) == 6


def _figure_rows():
    """FIGURES.md's B1-B20 rows: {fig: its paper-fidelity cell}."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "FIGURES.md").read_text()
    header = next(ln for ln in text.splitlines() if ln.startswith("| fig |"))
    col = [c.strip() for c in header.strip("|").split("|")].index(
        "paper fidelity (the paper on `full`; the corrections on `full-corrected`)")
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")][col]
            for ln in text.splitlines() if re.match(r"\| B\d+ \|", ln)}
    assert sorted(rows, key=lambda b: int(b[1:])) == [f"B{i}" for i in range(1, 21)]
    return rows


def _named_settings(cell: str, profile: str) -> list[tuple[str, str, str]]:
    """(notebook stem, parameter, value) of every "<profile>: `NN.name value`, ..." in a cell."""
    import re

    found = []
    for group in re.findall(rf"(?<![\w-]){re.escape(profile)}: ((?:`[^`]+`(?:, )?)+)", cell):
        found += re.findall(r"`(\d\d)\.([a-z0-9_]+) ([^`]+)`", group)
    return found


def test_figures_md_marks_every_figure_and_its_restoring_parameters_exist():
    import re
    from pathlib import Path

    import yaml

    from laionet.pipeline.params import read_parameters

    root = Path(__file__).resolve().parents[1]
    named = 0
    for fig, fidelity in _figure_rows().items():
        assert re.match(r"(faithful|partial|deviation|as B\d+)\b", fidelity), (fig, fidelity)
        if fidelity.startswith("deviation"):
            assert "paper: `" in fidelity, f"{fig}: a deviation names the parameter restoring it"
        for stem, name, value in re.findall(r"`(\d\d)\.([a-z0-9_]+)(?: ([^`]+))?`", fidelity):
            nb = next((root / "notebooks").glob(f"{stem}_*.py"))
            params = read_parameters(nb)
            assert name in params, f"{fig}: {nb.name} declares no parameter {name!r}"
            if value:
                params[name].check(yaml.safe_load(value), f"FIGURES.md {fig}")
            named += 1
    assert named >= 15


def test_the_full_profile_is_the_paper_and_full_corrected_its_corrections():
    """Every "full: `NN.name value`" of FIGURES.md is what the full profile gives that notebook
    (as `runner list --profile full` shows it), every "full-corrected: ..." what
    full-corrected gives; each correction is a different value from the paper's."""
    from pathlib import Path

    import yaml

    from laionet.pipeline.params import notebook_parameters, read_parameters
    from laionet.pipeline.profiles import load_profile

    root = Path(__file__).resolve().parents[1]
    profiles = {p: load_profile(p) for p in ("full", "full-corrected")}
    checked = {p: 0 for p in profiles}
    for fig, cell in _figure_rows().items():
        for name, prof in profiles.items():
            for stem, param, value in _named_settings(cell, name):
                nb = next((root / "notebooks").glob(f"{stem}_*.py"))
                got, _ = notebook_parameters(prof, nb.stem, read_parameters(nb), {}, name)
                assert got[param] == yaml.safe_load(value), (fig, name, nb.stem, param, got[param])
                checked[name] += 1
        paper = {(s, p): v for s, p, v in _named_settings(cell, "full")}
        for stem, param, value in _named_settings(cell, "full-corrected"):
            assert (stem, param) in paper, f"{fig}: the correction {stem}.{param} has no paper value"
            assert yaml.safe_load(paper[stem, param]) != yaml.safe_load(value), (fig, stem, param)
    assert checked["full"] >= 13 and checked["full-corrected"] >= 11, checked


def test_the_authors_class_list_reaches_every_stage_that_builds_the_class_table(reference):
    from pathlib import Path

    from laionet.pipeline import stages
    from laionet.pipeline.params import read_parameters
    from laionet.sources import classes as lc

    root = Path(__file__).resolve().parents[1]
    users = [nb for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))
             if "class_table(" in nb.read_text()]
    assert {nb.stem[:2] for nb in users} >= {"01", "02", "07", "08"}
    for nb in users + [root / "notebooks" / "04_evaluation.py"]:  # 04: through its pipeline
        params, src = read_parameters(nb), nb.read_text()
        for name in ("authors_class_list", "head_source"):
            assert name in params, f"{nb.name} does not declare {name}"
            assert f"{name}={name}" in src or "**S.params" in src, \
                f"{nb.name} does not pass {name} on"
    assert {"authors_class_list", "head_source"} <= stages.SHARED  # one -p reaches them all
    # the authors' file itself (husky as n02112837): refused with the parameter to set ...
    path = reference("eval-on-laion", "ILSVRC2012_synsets.txt")
    try:
        lc.class_table(path, head_source="timm")
        raise AssertionError("the authors' husky wnid must need authors_class_list")
    except ValueError as exc:
        assert "-p authors_class_list true" in str(exc)
    # ... and accepted with it, crane the bird reachable
    t = lc.class_table(path, authors_class_list=True, head_source="timm")
    assert len(t) == 999 and "n02012849" in {w for _, w in lc.lemma_map(t)}


def test_every_notebook_loads_its_encoders_on_its_device_parameter():
    """A notebook that loads an encoder declares `device` and passes it to every loader (07, 08
    and 09 loaded theirs with the default `auto`, ignoring the profile's `device: cpu`)."""
    import re

    from laionet.pipeline.params import read_parameters as declared

    loads = re.compile(r"load_(?:image|text)_encoder\(([^()]*(?:\([^()]*\))?[^()]*)\)")
    for nb in sorted((project_root() / "notebooks").glob("0*.py")):
        calls = loads.findall(nb.read_text())
        if not calls:
            continue
        assert "device" in declared(nb), nb.name
        assert all("device=device" in c for c in calls), (nb.name, calls)
