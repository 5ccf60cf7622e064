"""The authors' released LAIONet as an input (issue 15, item 6): stage 04's released route on it,
and its rows joined to a user's own LAION copy by URL + caption hash (never by their index)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import reference_file
from laionet.jobs import evaluation as pipeline
from laionet.method import accuracy as aggregate
from laionet.sources.classes import class_table
from laionet.sources.released import (caption_hash, join_released_laionet, name_def_wnids,
                                      read_released_laionet)

WNIDS = ["n01440764", "n01443537", "n02123045"]  # tench, goldfish, tabby
SIM = "text_to_name_def_wnid_similarity_clip-vit-base-patch32"
PART = "part-{:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"


@pytest.fixture(scope="module")
def name_def():
    t = class_table(WNIDS)
    return dict(zip(t["wnid"], t["name_def"]))


def released_fixture(name_def) -> pd.DataFrame:
    """Six rows in the authors' LAIONet schema (index = their global index part*1e8+row)."""
    idx = [26_10564385, 3_00000017, 3_00000018, 11_00000002, 11_00000009, 30_00000001]
    cls = [WNIDS[0], WNIDS[0], WNIDS[1], WNIDS[1], WNIDS[2], WNIDS[2]]
    df = pd.DataFrame({
        "SAMPLE_ID": [101, 102, 103, 104, 105, 106],
        "URL": [f"http://img.example/{i}.jpg" for i in range(6)],
        "TEXT": ["a tench caught at dawn", "tench on a plate", "goldfish bowl",
                 "my goldfish", "tabby on a sofa", "Tabby cat"],
        "HEIGHT": [256] * 6, "WIDTH": [256] * 6, "LICENSE": ["?"] * 6,
        "NSFW": ["UNLIKELY"] * 6, "similarity": [0.31, 0.30, 0.33, 0.35, 0.32, 0.30],
        "name_def_wnid": [name_def[w] for w in cls],
        SIM: [0.85, 0.83, 0.90, 0.84, 0.88, 0.86],
        "recognized_text": ["NO TEXT", "NO TEXT", "goldfish", "NO TEXT", "NO TEXT", None],
        "wnid_is_in_recognized_text": [False, False, True, False, False, False],
        "top_1_is_correct_resnet-18": [True, False, True, True, False, None],
        "top_5_is_correct_resnet-18": [True, True, True, True, True, None],
        "top_1_is_correct_clip-vit-base-patch32": [True, True, False, False, True, False],
        "top_5_is_correct_clip-vit-base-patch32": [True, True, True, False, True, False],
    }, index=pd.Index(idx, name=None))
    return df


def user_laion(tmp_path, released: pd.DataFrame):
    """The user's LAION copy: two parts, rows in another order than the authors' files; the
    caption of released row 3 differs (an edited mirror), row 5's URL is absent, row 0 twice."""
    r = released.reset_index(drop=True)
    p0 = pd.DataFrame({"SAMPLE_ID": [1, 2, 3, 4], "URL": [r.URL[2], "http://other/x.jpg", r.URL[0], r.URL[0]],
                       "TEXT": [r.TEXT[2], "unrelated", r.TEXT[0], r.TEXT[0]],
                       "HEIGHT": [1, 2, 3, 4], "WIDTH": [5, 6, 7, 8], "LICENSE": ["?"] * 4,
                       "NSFW": ["UNLIKELY"] * 4, "similarity": [0.3] * 4})
    p1 = pd.DataFrame({"SAMPLE_ID": [5, 6, 7], "URL": [r.URL[4], r.URL[3], r.URL[1]],
                       "TEXT": [r.TEXT[4], r.TEXT[3] + " (edited)", r.TEXT[1]],
                       "HEIGHT": [9, 10, 11], "WIDTH": [12, 13, 14], "LICENSE": ["?"] * 3,
                       "NSFW": ["UNLIKELY", "UNSURE", "UNLIKELY"], "similarity": [0.3] * 3})
    d = tmp_path / "laion"
    d.mkdir()
    p0.to_parquet(d / PART.format(0), index=False)
    p1.to_parquet(d / PART.format(7), index=False)
    return str(d / "part-*.parquet")


def test_join_by_url_and_caption_hash_not_by_authors_index(tmp_path, name_def):
    rel = released_fixture(name_def)
    joined, report = join_released_laionet(rel, user_laion(tmp_path, rel), classes=WNIDS,
                                           batch_rows=2)  # rows counted across batches
    assert report == {"n_released": 6, "n_released_duplicate": 0, "n_joined": 4,
                      "n_caption_differs": 1, "n_url_absent": 1, "n_duplicate": 1,
                      "caption_differs_examples": [11_00000002],
                      "url_absent_examples": [30_00000001]}
    by_auth = joined.set_index("authors_index")
    # keys are the user's part * 1e8 + row, whatever the authors' index said
    assert by_auth.loc[26_10564385, "key"] == 0 * 100_000_000 + 2  # first of its two copies
    assert by_auth.loc[3_00000018, "key"] == 0
    assert by_auth.loc[3_00000017, "key"] == 7 * 100_000_000 + 2
    assert by_auth.loc[11_00000009, "key"] == 7 * 100_000_000 + 0
    assert 11_00000002 not in by_auth.index  # its caption differs in the user's copy
    # classes from the exact synset texts; LAION columns from the user's copy; similarity theirs
    assert by_auth.loc[3_00000018, "wnid"] == WNIDS[1]
    assert by_auth.loc[3_00000017, "NSFW"] == "UNLIKELY" and by_auth.loc[3_00000017, "HEIGHT"] == 11
    assert by_auth.loc[11_00000009, "similarity"] == pytest.approx(0.88)
    assert by_auth.loc[3_00000018, "wnid_is_in_recognized_text"] == True  # noqa: E712
    assert list(joined.columns[:10]) == ["key", "part", "row", "wnid", "TEXT", "URL", "NSFW",
                                         "HEIGHT", "WIDTH", "similarity"]
    assert joined["key"].is_monotonic_increasing and joined["key"].is_unique


def test_caption_hash_is_exact():
    h = caption_hash(["Tabby cat", "tabby cat", "Tabby cat ", None, ""])
    assert len(set(h)) == 5 and caption_hash(["Tabby cat"])[0] == h[0]


def test_released_route_on_the_authors_laionet_schema(tmp_path, name_def):
    """Classes from name_def_wnid, OCR-flagged rows dropped from the results (A12) but counted
    in the LAION weights, accuracies by hand; then the notebook's join writes its products."""
    rel = released_fixture(name_def)
    rel.to_parquet(tmp_path / "laionet_released.parquet")
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 5)]
    val = pd.DataFrame({"name_def_wnid": [name_def[w] for w in [WNIDS[0], WNIDS[1], WNIDS[2], WNIDS[2]]],
                        "top_1_is_correct_resnet-18": [True, True, False, True],
                        "top_5_is_correct_resnet-18": [True] * 4,
                        "top_1_is_correct_clip-vit-base-patch32": [False, True, True, True],
                        "top_5_is_correct_clip-vit-base-patch32": [True] * 4}, index=names)
    val.to_parquet(tmp_path / "val.parquet")
    (tmp_path / "labels.json").write_text(json.dumps(dict(zip(names, [WNIDS[0], WNIDS[1], WNIDS[2], WNIDS[2]]))))
    res, wnids, counts = read_released_laionet(tmp_path / "laionet_released.parquet", WNIDS)
    assert counts == {"n_rows": 6, "n_recognized_text": 1, "n_evaluated": 5}
    assert "300000018" not in set(res["image_key"])  # "goldfish" written on the image
    ev = pipeline.released_evaluation(tmp_path / "out", tmp_path / "val.parquet",
                                      tmp_path / "labels.json", tmp_path / "laionet_released.parquet",
                                      classes=WNIDS)
    assert ev.laionet_wnids.tolist() == [WNIDS[0]] * 2 + [WNIDS[1]] * 2 + [WNIDS[2]] * 2
    s = aggregate.summarize(ev.results, ev.laionet_wnids, ev.keys, ev.groups)
    acc = s.acc[(s.acc["weighting"] == "equal")].set_index(["dataset", "model", "k"])["accuracy"]
    # resnet-18 top-1 on LAIONet: tench 1/2, goldfish 1/1 (the flagged row dropped), tabby 0/1
    assert acc[("LAIONet", "resnet-18", 1)] == pytest.approx((0.5 + 1 + 0) / 3)
    assert acc[("LAIONet", "clip-vit-base-patch32", 5)] == pytest.approx((1 + 0 + 0.5) / 3)
    assert acc[("ImageNet", "resnet-18", 1)] == pytest.approx((1 + 1 + 0.5) / 3)
    keep = read_released_laionet(tmp_path / "laionet_released.parquet", WNIDS,
                                 drop_recognized_text=False)
    assert keep[2]["n_evaluated"] == 6
    report = pipeline.join_released_to_laion(tmp_path / "out", tmp_path / "laionet_released.parquet",
                                             user_laion(tmp_path, rel), classes=WNIDS)
    assert report["n_joined"] == 4 and report["n_caption_differs"] == 1
    assert len(pd.read_parquet(tmp_path / "out" / pipeline.JOINED_LAIONET)) == 4
    assert json.loads((tmp_path / "out" / pipeline.JOIN_REPORT).read_text())["n_url_absent"] == 1


def test_unknown_name_def_text_is_reported():
    with pytest.raises(ValueError, match="row 'x'.*not a synset"):
        name_def_wnids(pd.Series(["not a synset text"], index=["x"]), WNIDS)


def test_name_def_texts_of_the_authors_val_table_give_the_devkit_wnids():
    """Their 1,000 exact synset texts (D4) map onto the devkit labels of all 50,000 images."""
    val = pd.read_parquet(reference_file("eval-on-laion", "ILSVRC2012_val.parquet"),
                          columns=["name_def_wnid"])
    labels = json.loads(reference_file("eval-on-laion", "val_imagename2wnid.json").read_text())
    got = name_def_wnids(val["name_def_wnid"])
    want = val.index.map(labels)
    assert (got.to_numpy() == np.asarray(want)).mean() == 1.0
