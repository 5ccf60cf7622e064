"""Readers for the image datasets the paper compares, in their real on-disk formats.

Every reader returns a tidy DataFrame with at least ``image_key`` (unique within the dataset),
``path`` (absolute file path) and ``wnid``; the demo world writes the same formats, so nothing
here branches on the profile: ImageNet val (``ILSVRC2012_val_%08d.JPEG``, flat or in torchvision's
``<wnid>/`` folders, + a devkit, JSON, ``file_name,wnid`` CSV or Kaggle ground truth), ImageNet
train (``train/<wnid>/*.JPEG``), ImageNetV2 (``imagenetv2-<version>-format-val/<class index>/``:
integer class indices, never ranks in lexicographic order) and ImageNet-Captions
(``imagenet_captions.json``, the authors' caption join, paper_spec A18). ``iter_images`` decodes
the files of such a table once each, as RGB.
"""

import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from laionet.sources.classes import imagenet1k_wnids

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
VAL_NAME = "ILSVRC2012_val_{:08d}.JPEG"
_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class V2Version:
    """One ImageNetV2 release: its name, the paper's letter and its MTurk selection frequency."""

    name: str
    letter: str
    selection_frequency: float

    @property
    def folder(self) -> str:
        return f"imagenetv2-{self.name}-format-val"


#: The three releases ordered by the MTurk selection frequency the paper uses as x-axis (A16).
IMAGENETV2_VERSIONS: dict[str, V2Version] = {v.name: v for v in (
    V2Version("matched-frequency", "b", 0.73), V2Version("threshold0.7", "a", 0.85),
    V2Version("top-images", "c", 0.93))}


def imagenetv2_version(version: str) -> V2Version:
    """Look a release up by name, letter or real folder name (``imagenetv2-top-images-format-val``)."""
    key = re.sub(r"^imagenetv2-|-format-val$", "", str(version).strip())
    for v in IMAGENETV2_VERSIONS.values():
        if key in (v.name, v.letter):
            return v
    raise ValueError(f"unknown ImageNetV2 version {version!r}; expected one of "
                     f"{[v.name for v in IMAGENETV2_VERSIONS.values()]} (or letters a/b/c, "
                     "or the release folder name imagenetv2-<version>-format-val)")


def _list_images(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        files = [e for e in it if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(files, key=lambda e: e.name)


def _subdirs(folder: Path, wnids_only: bool = True) -> dict[str, str]:
    with os.scandir(folder) as it:
        return {e.name: e.path for e in it
                if e.is_dir() and (not wnids_only or _WNID.match(e.name))}


def _class_folder(folder: str | os.PathLike, wnid: str, key_prefix: str = "") -> pd.DataFrame:
    files = _list_images(Path(folder))
    return pd.DataFrame({"image_key": [key_prefix + e.name for e in files],
                         "path": [e.path for e in files], "wnid": wnid})


def _require_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what}: {p} is not a folder")
    return p


def _check_wnids(wnids: pd.Series, source: str) -> None:
    bad = wnids[~wnids.astype(str).str.fullmatch(_WNID.pattern)]
    if len(bad):
        raise ValueError(f"{source}: {len(bad)} value(s) are not WordNet ids like 'n01440764', "
                         f"e.g. {bad.head(3).tolist()} (at rows {bad.index[:3].tolist()})")


def devkit_id_to_wnid(meta_mat: str | os.PathLike) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID from the devkit's meta.mat (fields ILSVRC2012_ID and WNID)."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    except KeyError as exc:
        raise ValueError(f"{meta_mat}: no 'synsets' struct array (is it the devkit's meta.mat?)") from exc
    synsets = np.atleast_1d(synsets).ravel()
    names = synsets.dtype.names or ()
    if "ILSVRC2012_ID" not in names or "WNID" not in names:
        raise ValueError(f"{meta_mat}: 'synsets' lacks ILSVRC2012_ID / WNID fields (has {names})")
    return {int(np.asarray(i).item()): str(np.asarray(w).item())
            for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}


def _ground_truth_from_devkit(devkit_dir: Path) -> pd.Series:
    for d in (devkit_dir / "data", devkit_dir):
        gt, meta = d / "ILSVRC2012_validation_ground_truth.txt", d / "meta.mat"
        if gt.is_file() and meta.is_file():
            break
    else:
        raise FileNotFoundError(
            f"ImageNet devkit {devkit_dir}: expected data/ILSVRC2012_validation_ground_truth.txt "
            "and data/meta.mat (from ILSVRC2012_devkit_t12.tar.gz); or pass ground_truth= a JSON "
            "{file name: wnid} or Kaggle's LOC_val_solution.csv")
    id2wnid = devkit_id_to_wnid(meta)
    ids = np.loadtxt(gt, dtype=np.int64, ndmin=1)
    unknown = sorted(set(np.unique(ids).tolist()) - set(id2wnid))
    if unknown:
        raise ValueError(f"{gt}: ILSVRC2012_ID(s) {unknown[:5]} are not in {meta}")
    names = [VAL_NAME.format(i) for i in range(1, len(ids) + 1)]
    return pd.Series(pd.Series(ids).map(id2wnid).to_numpy(), index=names, name="wnid")


def _ground_truth_from_file(path: Path) -> pd.Series:
    """A JSON {file name: wnid}, a plain CSV (file_name, wnid) or Kaggle's LOC_val_solution.csv
    (ImageId, PredictionString)."""
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet val ground truth {path} does not exist")
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{file name: wnid}}, "
                             f"got {type(data).__name__}")
        return pd.Series(data, name="wnid", dtype=object)
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        df = pd.read_csv(path, sep=None, engine="python", dtype=str)
        if {"ImageId", "PredictionString"} <= set(df.columns):
            # PredictionString = "<wnid> x0 y0 x1 y1 <wnid> ..."; every box of a val image has its class.
            wnid = df["PredictionString"].astype(str).str.split(" ", n=1).str[0]
            return pd.Series(wnid.to_numpy(), index=df["ImageId"].astype(str) + ".JPEG", name="wnid")
        name = next((c for c in ("file_name", "filename", "file", "image", "image_key", "ImageId")
                     if c in df.columns), None)
        label = next((c for c in ("wnid", "label", "synset") if c in df.columns), None)
        if name is None or label is None:
            raise ValueError(f"{path}: expected columns file_name,wnid (a plain ground truth) or "
                             f"Kaggle's ImageId,PredictionString; found {list(df.columns)}")
        files = df[name].astype(str).map(lambda f: f if f.lower().endswith(IMAGE_SUFFIXES) else f + ".JPEG")
        return pd.Series(df[label].astype(str).to_numpy(), index=files.map(lambda f: Path(f).name),
                         name="wnid")
    raise ValueError(f"{path}: unsupported ground truth format; use the devkit folder, a .json "
                     "{file name: wnid}, a file_name,wnid .csv or Kaggle's LOC_val_solution.csv")


def _val_files(val: Path) -> tuple[list[os.DirEntry], dict[str, str]]:
    """The val images, flat or one level down in ``<wnid>/`` folders: (files sorted by name,
    file name -> its folder's wnid for those in class folders)."""
    files = _list_images(val)
    folder_wnid: dict[str, str] = {}
    for wnid, sub in sorted(_subdirs(val).items()):
        for e in _list_images(Path(sub)):
            if e.name in folder_wnid:
                raise ValueError(f"ImageNet val folder {val}: {e.name} is in both {folder_wnid[e.name]}/ "
                                 f"and {wnid}/")
            folder_wnid[e.name] = wnid
            files.append(e)
    names = pd.Index([e.name for e in files])
    if names.has_duplicates:
        raise ValueError(f"ImageNet val folder {val}: {names[names.duplicated()][:3].tolist()} are "
                         "both flat and in a class folder")
    return sorted(files, key=lambda e: e.name), folder_wnid


def read_imagenet_val(val_dir: str | os.PathLike, devkit_dir: str | os.PathLike | None = None,
                      ground_truth: str | os.PathLike | None = None) -> pd.DataFrame:
    """ImageNet val images (flat in ``val_dir``, in ``<wnid>/`` sub-folders, or both) with their
    labels -> DataFrame(image_key = file name, path, wnid), sorted by key. Labels come from
    ``ground_truth`` (e.g. the authors' val_imagename2wnid.json), else ``devkit_dir`` (a
    ground-truth *file* given there is read as ``ground_truth``), else, when every image is in a
    class folder, the folder names. A class folder that disagrees with the ground truth and an
    image without a label are errors; labels of absent images only warn (a partial val folder)."""
    val = _require_dir(val_dir, "ImageNet val folder")
    if devkit_dir and not ground_truth and Path(devkit_dir).expanduser().is_file():
        devkit_dir, ground_truth = None, devkit_dir
    files, folder_wnid = _val_files(val)
    if not files:
        raise FileNotFoundError(f"ImageNet val folder {val}: no image files (flat or in <wnid>/ folders)")
    names = pd.Index([e.name for e in files])
    if ground_truth:
        labels, source = _ground_truth_from_file(Path(ground_truth).expanduser()), str(ground_truth)
    elif devkit_dir:
        labels = _ground_truth_from_devkit(_require_dir(devkit_dir, "ImageNet devkit"))
        source = str(devkit_dir)
    elif len(folder_wnid) == len(names):
        labels, source = pd.Series(folder_wnid, name="wnid"), f"{val} (class folder names)"
    else:
        raise ValueError("read_imagenet_val: pass devkit_dir (ILSVRC2012_devkit_t12) or "
                         "ground_truth (JSON {file name: wnid}, a file_name,wnid CSV or "
                         f"LOC_val_solution.csv); {val} is not entirely in <wnid>/ class folders")
    missing = names.difference(labels.index)
    if len(missing):
        raise ValueError(f"{source}: no label for {len(missing)} image(s) of {val}, e.g. "
                         f"{list(missing[:3])}; is it the ground truth of this val set?")
    if len(labels) > len(names):
        warnings.warn(f"{val}: {len(labels) - len(names)} of {len(labels)} labelled val images "
                      f"are not in the folder; reading the {len(names)} present", stacklevel=2)
    df = pd.DataFrame({"image_key": names, "path": [e.path for e in files],
                       "wnid": labels.reindex(names).to_numpy()})
    _check_wnids(df["wnid"], source)
    in_folder = df["image_key"].map(folder_wnid)
    wrong = df[in_folder.notna() & (in_folder != df["wnid"])]
    if len(wrong):
        r = wrong.iloc[0]
        raise ValueError(f"{source}: {len(wrong)} val image(s) sit in a class folder that is not "
                         f"their label, e.g. {r['path']} is labelled {r['wnid']}")
    df.attrs["source"] = source
    return df


def read_imagenet_train(train_dir: str | os.PathLike,
                        wnids: Iterable[str] | None = None) -> pd.DataFrame:
    """``train/<wnid>/*.JPEG`` -> DataFrame(image_key, path, wnid); image_key is the file name.
    ``wnids`` restricts (and checks) the classes read: a wanted class without a folder is an error.
    """
    train = _require_dir(train_dir, "ImageNet train folder")
    folders = _subdirs(train)
    if wnids is not None:
        wanted = list(dict.fromkeys(wnids))
        absent = [w for w in wanted if w not in folders]
        if absent:
            raise FileNotFoundError(f"ImageNet train {train}: no folder for {len(absent)} wnid(s), "
                                    f"e.g. {absent[:3]}")
        folders = {w: folders[w] for w in wanted}
    if not folders:
        raise FileNotFoundError(f"ImageNet train {train}: no <wnid>/ class folders")
    df = pd.concat([_class_folder(folders[w], w) for w in sorted(folders)], ignore_index=True)
    dup = df["image_key"].duplicated(keep=False)
    if dup.any():
        raise ValueError(f"ImageNet train {train}: file names repeat across classes, e.g. "
                         f"{df.loc[dup, 'path'].head(2).tolist()}")
    return df


def read_class_info(path: str | os.PathLike) -> list[str]:
    """ImageNetV2 ``class_info.json`` ([{cid, wnid, ...}]) -> the wnid of every class index."""
    path = Path(path).expanduser()
    data = json.loads(path.read_text())
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a JSON list of {{cid, wnid, ...}} objects")
    try:
        pairs = sorted((int(r["cid"]), str(r["wnid"])) for r in data)
    except KeyError as exc:
        raise ValueError(f"{path}: an entry lacks the key {exc}; each needs cid and wnid") from exc
    if [c for c, _ in pairs] != list(range(len(pairs))):
        raise ValueError(f"{path}: cid values must be 0..{len(pairs) - 1}, each once")
    out = [w for _, w in pairs]
    _check_wnids(pd.Series(out), str(path))
    return out


def _v2_folder(root: Path, version: V2Version) -> Path:
    if root.name in (version.folder, version.name):
        return root
    for name in (version.folder, version.name, f"ImageNetV2-{version.name}"):
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"ImageNetV2 {version.name}: no folder {version.folder}/ under {root} "
                            "(extract imagenetv2-<version>.tar.gz there, or pass the folder)")


def read_imagenetv2(root: str | os.PathLike, version: str,
                    class_info: str | os.PathLike | None = None) -> pd.DataFrame:
    """One ImageNetV2 release -> DataFrame(image_key, path, wnid, class_index, version).

    Folders ``0``..``999`` are class *indices*: folder "10" is class 10, mapped to its wnid by
    integer index through ``class_info`` (ImageNetV2's class_info.json) when given or found next
    to the release folder, else through timm's ImageNet-1k synset list (index order).
    ``image_key`` is ``"<class index>/<file name>"``, as the authors index it.
    """
    v = imagenetv2_version(version)
    folder = _v2_folder(_require_dir(root, "ImageNetV2 root"), v)
    if class_info is None:
        class_info = next((p / "class_info.json" for p in (folder, folder.parent)
                           if (p / "class_info.json").is_file()), None)
    index_wnids = read_class_info(class_info) if class_info else list(imagenet1k_wnids())
    subdirs = _subdirs(folder, wnids_only=False)
    bad = sorted(n for n in subdirs if not n.isdigit())
    if bad:
        raise ValueError(f"{folder}: class folders must be integer indices 0..999, found {bad[:3]}")
    parts = []
    for name in sorted(subdirs, key=int):
        cid = int(name)
        if cid >= len(index_wnids):
            raise ValueError(f"{folder}/{name}: class index {cid} is outside the "
                             f"{len(index_wnids)} classes of {class_info or 'timm imagenet-1k'}")
        parts.append(_class_folder(subdirs[name], index_wnids[cid], f"{name}/")
                     .assign(class_index=np.int16(cid)))
    if not parts or not sum(len(p) for p in parts):
        raise FileNotFoundError(f"{folder}: no images in class-index folders")
    df = pd.concat(parts, ignore_index=True)
    df["version"] = v.name
    df.attrs.update(class_info=str(class_info or "timm:imagenet-1k"), version=v.name,
                    selection_frequency=v.selection_frequency)
    return df


def caption_text(title: pa.Array, tags: pa.Array, description: pa.Array) -> pa.Array:
    """``' '.join([title] + tags + [description])`` for whole Arrow columns (A18), vectorised;
    a null title or description counts as "", null tags as []."""
    title = pc.fill_null(title.cast(pa.string()), "")
    description = pc.fill_null(description.cast(pa.string()), "")
    tags = pc.fill_null(tags, pa.scalar([], type=tags.type))
    joined_tags = pc.binary_join(tags.cast(pa.list_(pa.string())), " ")
    # With no tags Python's join gives "title description", not "title  description".
    with_tags = pc.binary_join_element_wise(title, joined_tags, description, " ")
    without = pc.binary_join_element_wise(title, description, " ")
    return pc.if_else(pc.greater(pc.list_value_length(tags), 0), with_tags, without)


def read_imagenet_captions(json_path: str | os.PathLike) -> pd.DataFrame:
    """ImageNet-Captions JSON -> DataFrame(image_key, wnid, text), one row per file name; ``text``
    is ``caption_text``, exactly as the authors built it. Repeated file names keep their first row
    (the count dropped is in ``df.attrs``)."""
    path = Path(json_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet-Captions: {path} does not exist (imagenet_captions.json "
                                "from mlfoundations/imagenet-captions)")
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of {{filename, title, tags, description, "
                         f"wnid}} objects, got {type(records).__name__}")
    df = pd.DataFrame.from_records(records)
    need = {"filename", "title", "tags", "description", "wnid"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: missing field(s) {sorted(need - set(df.columns))}; "
                         f"found {sorted(df.columns)}")
    n_raw = len(df)
    df = df.drop_duplicates("filename", keep="first").reset_index(drop=True)
    bad_tags = df["tags"].map(lambda t: t is not None and not isinstance(t, list))
    if bad_tags.any():
        raise ValueError(f"{path}: 'tags' must be a list of strings (file "
                         f"{df['filename'][int(np.flatnonzero(bad_tags)[0])]!r})")
    table = pa.Table.from_pandas(df[["title", "tags", "description"]], preserve_index=False)
    text = caption_text(*(table.column(c).combine_chunks() for c in ("title", "tags", "description")))
    out = pd.DataFrame({"image_key": df["filename"].astype(str), "wnid": df["wnid"].astype(str),
                        "text": text.to_pandas()})
    _check_wnids(out["wnid"], str(path))
    out.attrs.update(source=str(path), n_duplicates_dropped=n_raw - len(df))
    return out


def decode_image(data: bytes, paper_rgb_only: bool = False) -> tuple["Image.Image | None", str]:
    """(RGB PIL image, "") of an encoded image file's bytes; non-RGB images (L, P, RGBA, CMYK,
    ...) are converted (fix of paper_spec E.7), or with ``paper_rgb_only=True`` skipped as the
    authors did: (None, why). Undecodable bytes raise OSError (or ValueError)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode != "RGB" and paper_rgb_only:
            return None, f"non-RGB mode {im.mode}"
        im.load()
        return (im.copy() if im.mode == "RGB" else im.convert("RGB")), ""


class ImageIterator:
    """``(image_key, RGB PIL image)`` for each row of ``df`` (columns image_key, path), each file
    decoded once by ``decode_image``; ``root`` prefixes relative paths. Skipped keys and the reason
    are kept in ``.skipped`` (non-RGB images under ``paper_rgb_only``, undecodable files when
    ``on_error="skip"``), so nothing vanishes."""

    def __init__(self, df: pd.DataFrame, root: str | os.PathLike | None = None,
                 paper_rgb_only: bool = False, on_error: str = "raise"):
        missing = {"image_key", "path"} - set(df.columns)
        if missing:
            raise ValueError(f"iter_images: the table lacks column(s) {sorted(missing)}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.df, self.root = df, Path(root) if root else None
        self.paper_rgb_only, self.on_error = paper_rgb_only, on_error
        self.skipped: dict = {}

    def __len__(self) -> int:
        return len(self.df)

    def __iter__(self) -> Iterator[tuple[object, "Image.Image"]]:
        for key, path in zip(self.df["image_key"].tolist(), self.df["path"].tolist()):
            full = self.root / path if self.root is not None else Path(path)
            try:
                rgb, why = decode_image(full.read_bytes(), self.paper_rgb_only)
            except (OSError, ValueError) as exc:
                if self.on_error == "raise":
                    raise OSError(f"cannot decode image {full} (image_key {key!r}): {exc}; "
                                  "pass on_error='skip' to record and skip it") from exc
                rgb, why = None, f"undecodable: {exc}"
            if rgb is None:
                self.skipped[key] = why
            else:
                yield key, rgb


iter_images = ImageIterator
