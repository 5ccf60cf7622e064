"""The demo world: real formats, byte determinism, the loopback host, the causal structure.

One tiny world (no models) is built per session; a second build checks byte identity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from laionet.demo import ImageHost, build_world, formats, v2
from laionet.demo.classes import TINY_WNIDS
from laionet.sources.imagenet import IMAGENETV2_VERSIONS

REAL_PART = re.compile(r"^part-(\d{5})-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000\.snappy\.parquet$")
LAION_COLUMNS = ["SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("demo") / "world", size="tiny", seed=0,
                       train_models=False)


# ---- formats: readers written for the real files read the demo files unchanged ----------------

def test_laion_parts_have_the_real_schema_and_names(world):
    parts = world.laion_parts()
    assert [REAL_PART.match(p.name).group(1) for p in parts] == ["00000", "00001"]
    n = 0
    for p in parts:
        schema = pq.read_schema(p)
        assert schema.names == LAION_COLUMNS
        assert schema.field("SAMPLE_ID").type == pa.float64()
        assert schema.field("similarity").type == pa.float64()
        assert pa.types.is_integer(schema.field("HEIGHT").type)
        assert all(pa.types.is_string(schema.field(c).type)
                   for c in ("URL", "TEXT", "LICENSE", "NSFW"))
        df = pq.read_table(p).to_pandas()
        n += len(df)
        assert set(df["NSFW"].dropna()) <= {"UNLIKELY", "UNSURE", "NSFW"}
        assert df["URL"].str.startswith(formats.DEMO_URL_PREFIX).all()
        assert df["SAMPLE_ID"].is_unique and (df["similarity"] >= 0.3).all()
    truth = world.truth_table("laion")
    assert n == len(truth) == world.info()["counts"]["laion_rows"]
    assert truth["key"].is_unique


def test_imagenet_val_and_devkit_read_like_the_real_ones(world):
    from scipy.io import loadmat

    synsets = loadmat(str(world.imagenet_devkit / "data" / "meta.mat"), squeeze_me=True)["synsets"]
    id2wnid = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}
    assert sorted(id2wnid.values()) == sorted(TINY_WNIDS) and sorted(id2wnid) == [1, 2, 3, 4, 5, 6]
    assert {"words", "gloss", "num_children"} <= set(synsets.dtype.names)
    gt = np.loadtxt(world.imagenet_devkit / "data" / "ILSVRC2012_validation_ground_truth.txt", dtype=int)
    files = sorted(world.imagenet_val.iterdir())
    assert [f.name for f in files] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(gt) + 1)]
    truth = world.truth_table("imagenet").set_index("filename")
    assert [id2wnid[i] for i in gt] == truth.loc[[f.name for f in files], "wnid"].tolist()
    train = sorted(world.imagenet_train.glob("n*/n*_*.JPEG"))
    assert len(train) == 6 * 20 and all(f.name.startswith(f.parent.name + "_") for f in train)


def test_imagenetv2_folders_are_class_indices(world):
    info = json.loads(world.imagenetv2_class_info.read_text())
    assert len(info) == 1000 and [r["cid"] for r in info] == list(range(1000))
    assert {"cid", "wnid", "synset", "gloss"} <= set(info[0])
    cid2wnid = {r["cid"]: r["wnid"] for r in info}
    assert cid2wnid[286] == "n02125311" and "painter" in info[286]["synset"]
    for version in IMAGENETV2_VERSIONS:
        folder = world.imagenetv2_version(version)
        classes = sorted(int(d.name) for d in folder.iterdir())   # int() fails on a non-index
        assert sorted(cid2wnid[c] for c in classes) == sorted(TINY_WNIDS)
        counts = [len(list((folder / str(c)).glob("*.jpeg"))) for c in classes]
        assert counts == [5] * 6
    sf = pd.read_parquet(world.selection_frequencies)
    assert list(sf.columns) == ["version", "path", "wnid", "n_votes_yes", "n_votes",
                                "selection_frequency", "typicality"]
    assert all((world.imagenetv2 / p).is_file() for p in sf["path"])


def test_imagenet_captions_json_fields_and_caption_join(world):
    records = json.loads(world.imagenet_captions.read_text())
    assert len(records) == 6 * 20
    assert all(set(r) == {"filename", "title", "tags", "description", "wnid"} for r in records)
    assert all(isinstance(r["tags"], list) for r in records)
    train_names = {p.name for p in world.imagenet_train.glob("*/*.JPEG")}
    assert {r["filename"] for r in records} == train_names
    truth = world.truth_table("imagenet").set_index("filename")
    # the joined caption (A18) is the caption the image was found by, words intact
    for r in records[:20]:
        joined = " ".join([r["title"]] + r["tags"] + [r["description"]])
        assert joined.split() == truth.loc[r["filename"], "caption"].split()


def test_laion_files_fault_kinds_are_what_truth_says(world):
    truth = world.truth_table("laion")
    for status, grp in truth.groupby("file_status"):
        path = world.root / grp["path"].iloc[0]
        if status == "missing":
            assert not path.exists()
            continue
        data = path.read_bytes()
        if status == "garbage":
            with pytest.raises(OSError):      # PIL.UnidentifiedImageError
                Image.open(io.BytesIO(data)).load()
        elif status == "truncated":
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
        else:
            assert Image.open(io.BytesIO(data)).mode == ("RGB" if status == "ok" else status)


# ---- determinism and cache --------------------------------------------------------------------

def tree_digest(root) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path: the byte-identity check."""
    return {os.path.relpath(os.path.join(d, f), root):
            hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = build_world(tmp_path / "again", size="tiny", seed=0, train_models=False)
    a, b = tree_digest(world.root), tree_digest(again.root)
    a.pop("world.json"), b.pop("world.json")      # holds timings
    assert a.keys() == b.keys() and a == b
    other = build_world(tmp_path / "other", size="tiny", seed=1, train_models=False)
    c = tree_digest(other.root)
    assert c[LAION_PART] != a[LAION_PART]


LAION_PART = "laion/part-00000-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"


def test_rebuild_reuses_the_cache(world):
    before = world.world_json.stat().st_mtime_ns
    part = world.laion_parts()[0].stat().st_mtime_ns
    again = build_world(world.root, size="tiny", seed=0, train_models=False)
    assert again.root == world.root
    assert world.world_json.stat().st_mtime_ns == before
    assert world.laion_parts()[0].stat().st_mtime_ns == part


# ---- loopback host ----------------------------------------------------------------------------

def test_host_serves_404s_and_stops_cleanly(world):
    truth = world.truth_table("laion")
    ok = truth[truth["file_status"] == "ok"].iloc[0]
    missing = truth[truth["file_status"] == "missing"].iloc[0]
    threads_before = set(threading.enumerate())
    with ImageHost(world.http) as host:
        url = host.rewrite_url(formats.DEMO_URL_PREFIX + ok["path"].removeprefix("http/"))
        assert url.startswith("http://127.0.0.1:")
        port = int(url.split(":")[2].split("/")[0])
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
            assert r.read() == (world.root / ok["path"]).read_bytes()
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head, timeout=5) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(host.rewrite_url(formats.DEMO_URL_PREFIX
                                                    + missing["path"].removeprefix("http/")),
                                   timeout=5)
        assert err.value.code == 404
        assert host.rewrite_url("https://example.org/x.jpg") == "https://example.org/x.jpg"
    assert set(threading.enumerate()) <= threads_before       # the server thread is gone
    with pytest.raises(ConnectionRefusedError):               # nobody listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with socket.socket() as s:        # and the port can be bound again (TIME_WAIT allowed)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        _ = host.base_url


# ---- the causal structure --------------------------------------------------------------------

def test_image_based_selection_raises_typicality(world):
    laion = world.truth_table("laion")
    imagenet = world.truth_table("imagenet")
    text_selected = laion[laion["kind"].isin(["unique", "nested"])]
    assert imagenet["typicality"].mean() > text_selected["typicality"].mean() + 0.05
    # annotators accept mostly class images; a few wrong ones slip through (label noise)
    assert 0.9 < (imagenet["label"] == imagenet["query"]).mean() <= 1.0


def test_imagenetv2_versions_follow_their_rules(world):
    sf = pd.read_parquet(world.selection_frequencies)
    mean = sf.groupby("version")["selection_frequency"].mean()
    assert sf.loc[sf["version"] == "threshold0.7", "selection_frequency"].min() >= 0.7
    assert mean["matched-frequency"] < mean["threshold0.7"] <= mean["top-images"]


def test_bin_quota_matches_histogram_and_sums():
    ref = np.array([0.1] * 10 + [0.5] * 30 + [0.9] * 60)
    assert v2.bin_quota(ref, 10).tolist() == [1, 0, 3, 0, 6]
    assert v2.bin_quota(np.array([0.95, 0.35, 0.55]), 7).sum() == 7


# ---- notebook 00's checks and figures (laionet.demo.checks / plots) ----------------------------

def test_checks_of_notebook_00_on_the_tiny_world(world):
    from laionet.demo import checks

    laion = world.truth_table("laion")
    names = checks.class_names(world)
    sample = checks.caption_samples(laion, names, seed=0)
    assert list(sample.columns) == ["kind", "TEXT", "image shows", "typicality"]
    assert sample.groupby("kind").size().to_dict() == {k: 3 for k in set(sample["kind"])}
    assert (sample.loc[sample["kind"] == "no_class", "image shows"] == "(no class)").all()
    assert sample.equals(checks.caption_samples(laion, names, seed=0))  # seeded
    sets = checks.comparison_sets(world)
    typ, gap = checks.typicality_summary(sets)
    assert gap == typ.loc["ImageNet-mini train", "mean"] - typ.loc["LAION text-selected", "mean"]
    assert checks.typicality_raised(gap) and not checks.typicality_raised(0.05)
    compare, emb = checks.set_embeddings(world, sets)
    assert list(emb) == ["pixels"]  # no trained tower in this world
    assert set(compare["set"]) == {checks.TEXT_SET, checks.IMAGE_SET}
    assert emb["pixels"].shape[0] == len(compare)
    acc, table = checks.accuracy_table(world, sets)  # no models: both empty, the check skips
    assert acc.empty and table.empty
    assert checks.classifiers_lose_accuracy(table, 6) == (
        None, "no models trained (train_models=False): classifier check skipped")


def test_intra_class_summary_and_its_check():
    from laionet.demo import checks

    # class 0: ImageNet images identical (cosine 1), LAION ones orthogonal (0); class 1: equal
    e = np.eye(4)
    emb = np.vstack([e[0], e[0], e[1], e[2], e[3], e[3], e[3], e[3]])
    compare = pd.DataFrame({"set": [checks.IMAGE_SET] * 2 + [checks.TEXT_SET] * 2
                            + [checks.IMAGE_SET] * 2 + [checks.TEXT_SET] * 2,
                            "label": [0, 0, 0, 0, 1, 1, 1, 1]})
    s = checks.intra_class_summary(compare, {"toy": emb}).loc["toy"]
    assert (s["imagenet"], s["laion"], s["delta"], s["share_imagenet_higher"]) == (1.0, 0.5, 0.5, 0.5)
    assert checks.imagenet_more_similar(pd.DataFrame({"delta": [0.1, 0.01]}))
    assert not checks.imagenet_more_similar(pd.DataFrame({"delta": [0.1, 0.0]}))


def test_classifier_accuracy_check_needs_every_classifier_to_learn():
    from laionet.demo import checks

    table = pd.DataFrame({"ImageNet-mini val": [0.9, 0.8, 0.1], "LAION natural": [0.5, 0.85, 0.0]},
                         index=pd.Index(["a", "b", "c"], name="arch"))
    table["drop"] = table["ImageNet-mini val"] - table["LAION natural"]
    verdict, why = checks.classifiers_lose_accuracy(table, n_classes=6)  # c is below 2x chance
    assert verdict is False and why.startswith("['c'] do not beat 2x chance (0.33)")
    verdict, why = checks.classifiers_lose_accuracy(table.loc[["a", "b"]], 6)
    assert verdict is True and why.startswith("1 of 2 classifier(s)")  # b gains: half is most
    verdict, why = checks.classifiers_lose_accuracy(table.loc[["b"]], 6)
    assert verdict is False and why.startswith("0 of 1 classifier(s)")


def test_figures_of_notebook_00(world):
    import matplotlib.pyplot as plt

    from laionet.demo import checks, plots

    fig = plots.samples_by_typicality(world, n_classes=3)
    assert len(fig.axes) == 3 * len(plots.TYPICALITY_QUANTILES)
    assert all(ax.get_title().startswith("t=") for ax in fig.axes)
    laion = world.truth_table("laion")
    fig2 = plots.class_frequencies(laion, checks.class_names(world))
    assert len(fig2.axes[0].patches) == 6 and len(fig2.axes[1].patches) == 6
    fig3 = plots.typicality_histogram(checks.comparison_sets(world))
    assert [t.get_text() for t in fig3.axes[0].get_legend().get_texts()] == [
        checks.TEXT_SET, checks.IMAGE_SET]
    plt.close("all")


# ---- layout and cache keys ---------------------------------------------------------------------

def test_world_paths_and_pipeline_keys(world):
    from laionet.demo.layout import WORLD, locate
    from laionet.demo.world import LAYOUT

    assert world.imagenet_val == world.root / "imagenet" / "val" and world.imagenet_val.is_dir()
    assert all(getattr(world, k).exists() for k in LAYOUT if k != "models")  # no models trained
    with pytest.raises(AttributeError, match="no 'nope'"):
        _ = world.nope
    assert locate(world, "classes") == world.classes_txt and locate(world, "http") == world.http
    assert world.model_files() == {} and locate(world, "image_tower") is None
    assert set(LAYOUT) <= set(WORLD)
    with pytest.raises(KeyError, match="no 'nope'"):
        locate(world, "nope")


def test_generator_digest_covers_every_module_the_generator_runs():
    """Editing any module the world is generated with must regenerate cached worlds."""
    import ast
    from pathlib import Path

    from laionet.demo import world as W

    for mod in W.GENERATOR_MODULES:
        tree = ast.parse((Path(W.__file__).parent / f"{mod}.py").read_text())
        used = {a.name if n.module == "laionet.demo" else n.module.rsplit(".", 1)[1]
                for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("laionet.demo") for a in n.names}
        # the models are trained from the data and keyed by their own code digest
        assert used - {"models"} <= set(W.GENERATOR_MODULES), (mod, used)
