"""Readers of ImageNet val/train, ImageNetV2 and ImageNet-Captions on small hand-built trees."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from laionet.sources import imagenet as ds

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def _img(path, mode="RGB", size=(8, 8), color=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, color)
    (im if mode == "RGB" else im.convert(mode)).save(path)
    return path


# ---------------------------------------------------------------- ImageNetV2

def _class_info(path, wnids):
    path.write_text(json.dumps([{"cid": i, "wnid": w, "synset": ["x"], "gloss": "g"}
                                for i, w in enumerate(wnids)]))
    return path


def test_imagenetv2_folders_are_integer_class_indices(tmp_path):
    wnids = [f"n{10000000 + i:08d}" for i in range(1000)]
    root = tmp_path / "v2"
    folder = root / "imagenetv2-matched-frequency-format-val"
    for cid in ("2", "10", "100"):
        _img(folder / cid / "a.jpeg")
    info = _class_info(tmp_path / "info.json", wnids)
    df = ds.read_imagenetv2(root, "matched-frequency", class_info=info)
    got = dict(zip(df["image_key"], df["wnid"]))
    # lexicographic order "10" < "100" < "2" would give indices 0, 1, 2
    assert got == {"2/a.jpeg": wnids[2], "10/a.jpeg": wnids[10], "100/a.jpeg": wnids[100]}
    assert df["class_index"].tolist() == [2, 10, 100]
    assert df.attrs["selection_frequency"] == 0.73


def test_imagenetv2_timm_fallback_and_real_class_info(tmp_path, reference):
    folder = tmp_path / "imagenetv2-top-images-format-val"
    for cid in ("0", "10", "999"):
        _img(folder / cid / "x.jpeg")
    timm_df = ds.read_imagenetv2(folder, "c")  # letter, the folder itself, no class_info
    assert timm_df["wnid"].tolist() == ["n01440764", "n01530575", "n15075141"]
    ref = ds.read_imagenetv2(folder, "top-images",
                             class_info=reference("eval-on-laion", "imagenetv2_class_info.json"))
    assert ref["wnid"].tolist() == timm_df["wnid"].tolist()
    assert ref["version"].unique().tolist() == ["top-images"]


def test_imagenetv2_class_info_found_beside_release_and_errors(tmp_path):
    root = tmp_path / "imagenetv2"
    _img(root / "imagenetv2-threshold0.7-format-val" / "1" / "a.jpeg")
    _class_info(root / "class_info.json", WNIDS)
    df = ds.read_imagenetv2(root, "imagenetv2-threshold0.7-format-val")
    assert df["wnid"].tolist() == [WNIDS[1]]
    _img(root / "imagenetv2-threshold0.7-format-val" / "7" / "a.jpeg")
    with pytest.raises(ValueError, match="class index 7"):
        ds.read_imagenetv2(root, "a")
    with pytest.raises(FileNotFoundError, match="top-images"):
        ds.read_imagenetv2(root, "top-images")
    with pytest.raises(ValueError, match="unknown ImageNetV2 version"):
        ds.imagenetv2_version("threshold0.9")


def test_v2_versions_ordered_by_selection_frequency():
    v = ds.IMAGENETV2_VERSIONS
    assert [(x.letter, x.selection_frequency) for x in v.values()] == \
        [("b", 0.73), ("a", 0.85), ("c", 0.93)]


# ---------------------------------------------------------------- ImageNet val / train

def _val_tree(tmp_path, n=4):
    val = tmp_path / "val"
    for i in range(1, n + 1):
        _img(val / ds.VAL_NAME.format(i))
    return val


def test_imagenet_val_devkit(tmp_path):
    from scipy.io import savemat

    val = _val_tree(tmp_path)
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    # meta.mat: ID 3 -> WNIDS[0], ID 1 -> WNIDS[1], ... (IDs are not in wnid order)
    ids = [3, 1, 2, 4]
    synsets = np.zeros((len(ids), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    for r, (i, w) in enumerate(zip(ids, WNIDS)):
        synsets[r, 0] = (np.array([[i]], dtype=np.uint16), w, "word")
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n3\n3\n4\n")
    df = ds.read_imagenet_val(val, devkit_dir=tmp_path / "devkit")
    assert df["image_key"].tolist() == [ds.VAL_NAME.format(i) for i in range(1, 5)]
    assert df["wnid"].tolist() == [WNIDS[1], WNIDS[0], WNIDS[0], WNIDS[3]]
    assert ds.devkit_id_to_wnid(data / "meta.mat") == dict(zip(ids, WNIDS))


def test_imagenet_val_reference_json_and_kaggle_csv(tmp_path, reference):
    val = _val_tree(tmp_path, n=3)
    gt = reference("eval-on-laion", "val_imagename2wnid.json")
    with pytest.warns(UserWarning, match="49997 of 50000"):
        df = ds.read_imagenet_val(val, ground_truth=gt)
    assert df["wnid"].tolist() == ["n01751748", "n09193705", "n02105855"]
    csv = tmp_path / "LOC_val_solution.csv"
    pd.DataFrame({"ImageId": [f"ILSVRC2012_val_{i:08d}" for i in (3, 1, 2)],
                  "PredictionString": ["n02105855 1 2 3 4 n02105855 5 6 7 8",
                                       "n01751748 1 2 3 4", "n09193705 0 0 1 1"]}).to_csv(csv,
                                                                                      index=False)
    assert ds.read_imagenet_val(val, ground_truth=csv)["wnid"].tolist() == df["wnid"].tolist()


def test_imagenet_val_errors_name_the_file(tmp_path):
    val = _val_tree(tmp_path, n=2)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({ds.VAL_NAME.format(1): WNIDS[0]}))
    with pytest.raises(ValueError, match=r"gt.json.*no label for 1 image"):
        ds.read_imagenet_val(val, ground_truth=gt)
    with pytest.raises(FileNotFoundError, match="meta.mat"):
        ds.read_imagenet_val(val, devkit_dir=tmp_path)
    gt.write_text(json.dumps({ds.VAL_NAME.format(i): "dog" for i in (1, 2)}))
    with pytest.raises(ValueError, match="not WordNet ids"):
        ds.read_imagenet_val(val, ground_truth=gt)


def test_imagenet_train(tmp_path):
    for w in WNIDS[:2]:
        for j in range(2):
            _img(tmp_path / w / f"{w}_{j}.JPEG")
    df = ds.read_imagenet_train(tmp_path)
    assert df.groupby("wnid").size().to_dict() == {WNIDS[0]: 2, WNIDS[1]: 2}
    assert ds.read_imagenet_train(tmp_path, wnids=[WNIDS[1]])["wnid"].unique().tolist() == [WNIDS[1]]
    with pytest.raises(FileNotFoundError, match=WNIDS[2]):
        ds.read_imagenet_train(tmp_path, wnids=[WNIDS[2]])


# ---------------------------------------------------------------- ImageNet-Captions

def test_imagenet_captions_join_rule(tmp_path):
    rows = [
        {"filename": "a.JPEG", "title": "T", "tags": ["x", "y"], "description": "D", "wnid": WNIDS[0]},
        {"filename": "b.JPEG", "title": "T2", "tags": [], "description": "", "wnid": WNIDS[1]},
        {"filename": "a.JPEG", "title": "dup", "tags": [], "description": "", "wnid": WNIDS[2]},
        {"filename": "c.JPEG", "title": None, "tags": None, "description": "only", "wnid": WNIDS[3]},
    ]
    path = tmp_path / "imagenet_captions.json"
    path.write_text(json.dumps(rows))
    df = ds.read_imagenet_captions(path)
    expected = [" ".join([r["title"]] + r["tags"] + [r["description"]]) for r in rows[:2]]
    assert df["text"].tolist() == expected + [" only"]
    assert df["image_key"].tolist() == ["a.JPEG", "b.JPEG", "c.JPEG"]
    assert df["wnid"].tolist() == [WNIDS[0], WNIDS[1], WNIDS[3]]
    assert df.attrs["n_duplicates_dropped"] == 1


# ---------------------------------------------------------------- decoding

def test_iter_images_converts_or_skips_non_rgb(tmp_path):
    paths = [_img(tmp_path / "rgb.png"), _img(tmp_path / "gray.png", mode="L"),
             _img(tmp_path / "rgba.png", mode="RGBA")]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    df = pd.DataFrame({"image_key": ["rgb", "gray", "rgba"], "path": [str(p) for p in paths]})
    got = list(ds.iter_images(df))
    assert [k for k, _ in got] == ["rgb", "gray", "rgba"]
    assert all(im.mode == "RGB" for _, im in got)
    it = ds.iter_images(df, paper_rgb_only=True)
    assert [k for k, _ in it] == ["rgb"]
    assert set(it.skipped) == {"gray", "rgba"}
    bad = pd.DataFrame({"image_key": ["b"], "path": ["broken.jpg"]})
    with pytest.raises(OSError, match="broken.jpg"):
        list(ds.iter_images(bad, root=tmp_path))
    it = ds.iter_images(bad, root=tmp_path, on_error="skip")
    assert list(it) == [] and "b" in it.skipped
    assert len(ds.iter_images(df)) == 3
    im, why = ds.decode_image(paths[1].read_bytes(), paper_rgb_only=True)
    assert im is None and why == "non-RGB mode L"


# ---------------------------------------------------------------- ImageNet val as real labs keep it

def test_imagenet_val_in_class_folders_and_plain_csv(tmp_path, reference):
    """The real photos of ../shared/reference in <wnid>/ sub-folders (torchvision's ImageFolder
    layout), labelled by the reference's plain file_name,wnid ground_truth.csv, by the folder names
    alone, or by that CSV given where a devkit folder is expected (stages 04/05/07's parameter)."""
    import os

    src = reference("ilsvrc2012-val-sample", "ground_truth.csv")
    gt = pd.read_csv(src).sort_values("file_name").head(5)
    val = tmp_path / "val"
    for i, (name, wnid) in enumerate(zip(gt["file_name"], gt["wnid"])):
        dest = (val / name) if i == 0 else (val / wnid / name)   # one flat, four in class folders
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src.parent / "images" / name, dest)
    with pytest.warns(UserWarning, match=r"\d+ of 677 labelled"):
        df = ds.read_imagenet_val(val, ground_truth=src)
    assert df["image_key"].tolist() == gt["file_name"].tolist()
    assert df["wnid"].tolist() == gt["wnid"].tolist()
    with pytest.warns(UserWarning):
        assert ds.read_imagenet_val(val, devkit_dir=src)["wnid"].tolist() == gt["wnid"].tolist()
    (val / gt["file_name"].iloc[0]).rename(val / gt["wnid"].iloc[1] / gt["file_name"].iloc[0])
    if gt["wnid"].iloc[0] != gt["wnid"].iloc[1]:  # now in the wrong class folder
        with pytest.raises(ValueError, match="class folder that is not their label"), pytest.warns(UserWarning):
            ds.read_imagenet_val(val, ground_truth=src)
    (val / gt["wnid"].iloc[0]).mkdir(exist_ok=True)
    (val / gt["wnid"].iloc[1] / gt["file_name"].iloc[0]).rename(
        val / gt["wnid"].iloc[0] / gt["file_name"].iloc[0])
    assert ds.read_imagenet_val(val)["wnid"].tolist() == gt["wnid"].tolist()   # folder names alone


def test_imagenet_val_plain_csv_errors_name_the_file(tmp_path):
    val = _val_tree(tmp_path, n=2)
    bad = tmp_path / "labels.csv"
    bad.write_text("name,class\nx,y\n")
    with pytest.raises(ValueError, match=r"labels.csv: expected columns file_name,wnid"):
        ds.read_imagenet_val(val, ground_truth=bad)
    with pytest.raises(ValueError, match="pass devkit_dir"):
        ds.read_imagenet_val(val)
