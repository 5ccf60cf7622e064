"""The full profile's rehearsal: real photos, captions and weights laid out in the real formats.

``build(out, port)`` turns the offline real assets of ``$LAIONET_REFERENCE`` (coco-mini,
ilsvrc2012-val-sample, imagenet-sample-images, img2dataset, eval-on-laion) into the folders a lab
would point ``profiles/full.yaml`` at (``profiles/rehearsal.yaml`` sets these paths; no stage reads
this module). Photos are linked, never copied. Under ``out`` (``runs/rehearsal-assets``):

    laion/part-0000{0,1}-*.parquet  LAION-400M's schema: COCO-2017 caption pairs (URL
        http://127.0.0.1:<port>/coco/<split>/<file>), then ``pad`` real LAION captions of
        img2dataset's test_10000.parquet without photos (URLs .../missing/: HTTP 404)
    http/coco/{train2017,val2017}/   what ``serve`` publishes
    imagenet/val/, imagenet/ground_truth.csv, imagenet/ILSVRC2012_devkit_t12/data/   real val
        photos under their real names; all 50,000 devkit labels (the authors' val_imagename2wnid),
        IDs 1..1000 in sorted-wnid order (not the devkit's numbering)
    imagenet/train/<wnid>/           the 1,000 sample photos, one per class
    imagenetv2/imagenetv2-<v>-format-val/<cid>/   a class's sample and val photos dealt over the
        three releases in turn, each photo in one (no V2 photos offline: a flat curve)
    imagenet-captions/imagenet_captions.json   the real form for the train photos; SYNTHETIC text
    models/open_clip-ViT-B-32-random-weights.safetensors   a random ViT-B-32 for the CLIP slots
        (marked random: every figure using it says "random weights")
    rehearsal.json                   what was built, the port, the counts

``focus="coco"`` keeps only the classes the COCO captions match (lemma rule of paper_spec A3): the
small rehearsal the tests run.

    python -m laionet.demo.rehearsal build [--out runs/rehearsal-assets] [--port 8765] [--pad 10000]
    python -m laionet.demo.rehearsal serve [--out runs/rehearsal-assets]    # while 03, 07, 09 run
"""

import argparse
import contextlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from laionet.demo.formats import (LAION_PART_NAME, write_class_info, write_imagenet_captions,
                                  write_imagenet_devkit, write_laion_part)
from laionet.demo.world import replaced_when_done
from laionet.method.matching import match_naive
from laionet.models.openclip import save_random_checkpoint
from laionet.sources.classes import class_table, lemma_map
from laionet.sources.imagenet import IMAGENETV2_VERSIONS
from laionet.sources.loopback import ImageHost
from laionet.util.files import read_json, write_json
from laionet.util.paths import project_root, resolve

DEFAULT_OUT = "runs/rehearsal-assets"
DEFAULT_PORT = 8765
SYNTHETIC = "SYNTHETIC rehearsal caption (not ImageNet-Captions text)"
CLIP_FILE = "models/open_clip-ViT-B-32-random-weights.safetensors"


def reference_root() -> Path:
    """$LAIONET_REFERENCE, else ../shared/reference next to the project, else /work/shared/reference."""
    env = os.environ.get("LAIONET_REFERENCE")
    cands = [Path(env)] if env else []
    cands += [project_root().parent / "shared" / "reference", Path("/work/shared/reference")]
    for c in cands:
        if (c / "coco-mini").is_dir():
            return c
    raise FileNotFoundError(f"the real reference assets were not found in {[str(c) for c in cands]} "
                            "(set LAIONET_REFERENCE to the folder holding coco-mini/, "
                            "ilsvrc2012-val-sample/, imagenet-sample-images/, img2dataset/, eval-on-laion/)")


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src.resolve(), dest)


def coco_pairs(ref: Path) -> pd.DataFrame:
    """Every real COCO caption of coco-mini with its photo: split, file_name, height, width,
    licence URL, caption id, caption."""
    rows = []
    for split in ("train2017", "val2017"):
        data = read_json(ref / "coco-mini" / "annotations" / f"captions_{split}.json")
        lic = {d["id"]: d["url"] for d in data.get("licenses", [])}
        imgs = {d["id"]: d for d in data["images"]}
        for a in data["annotations"]:
            im = imgs[a["image_id"]]
            if (ref / "coco-mini" / split / im["file_name"]).is_file():
                rows.append((split, im["file_name"], int(im["height"]), int(im["width"]),
                             lic.get(im.get("license"), "?"), int(a["id"]), a["caption"].strip()))
    df = pd.DataFrame(rows, columns=["split", "file_name", "height", "width", "license", "id", "caption"])
    return df.sort_values(["split", "file_name", "id"], ignore_index=True)


def matched_wnids(texts: list[str]) -> set[str]:
    """The ImageNet-1k classes whose lemmas (paper rule, unique in ImageNet) occur in ``texts``."""
    pairs = lemma_map(class_table("imagenet1k"))
    _, ids = match_naive(texts, [lem for lem, _ in pairs])
    return {pairs[i][1] for i in set(ids.tolist())}


def _write_part(df: pd.DataFrame, urls: list[str], first_id: int, laion_dir: Path, part: int) -> None:
    """One LAION part of ``df`` (TEXT, HEIGHT, WIDTH, LICENSE, NSFW) at ``urls``; LAION's CLIP
    similarity is unknown for these pairs (no CLIP weights offline): NaN."""
    write_laion_part(pd.DataFrame({
        "SAMPLE_ID": np.arange(first_id, first_id + len(df), dtype=np.float64),
        "URL": urls, "TEXT": df["TEXT"].tolist(),
        "HEIGHT": df["HEIGHT"].astype("Int64"), "WIDTH": df["WIDTH"].astype("Int64"),
        "LICENSE": df["LICENSE"].tolist(), "NSFW": df["NSFW"].tolist(),
        "similarity": np.full(len(df), np.nan)}), laion_dir, part)


def build(out: str | os.PathLike = DEFAULT_OUT, port: int = DEFAULT_PORT, pad: int = 10_000,
          focus: str = "all", val_limit: int = 0, clip: bool = True, seed: int = 0) -> Path:
    """Lay the real assets out under ``out`` (see the module docstring; built in a temporary
    folder renamed into place); returns ``out``. ``val_limit`` > 0 keeps that many val photos
    (sorted by name)."""
    if focus not in ("all", "coco"):
        raise ValueError(f"focus must be 'all' or 'coco', not {focus!r}")
    ref, out, base = reference_root(), resolve(out), f"http://127.0.0.1:{int(port)}"
    val_photos = ref / "ilsvrc2012-val-sample" / "images"
    with replaced_when_done(out) as tmp:
        # LAION parts: COCO pairs, then (pad) real captions without photos
        coco = coco_pairs(ref)
        photos = coco[["split", "file_name"]].drop_duplicates()
        for split, name in photos.itertuples(index=False):
            _link(ref / "coco-mini" / split / name, tmp / "http" / "coco" / split / name)
        _write_part(pd.DataFrame({"TEXT": coco["caption"], "HEIGHT": coco["height"],
                                  "WIDTH": coco["width"], "LICENSE": coco["license"],
                                  "NSFW": "UNLIKELY"}),
                    [f"{base}/coco/{s}/{f}" for s, f in zip(coco["split"], coco["file_name"])],
                    1, tmp / "laion", 0)
        n_pad = 0
        if pad:
            p = pd.read_parquet(ref / "img2dataset" / "test_10000.parquet", columns=["TEXT"]).head(pad)
            p = p.assign(HEIGHT=pd.NA, WIDTH=pd.NA, LICENSE="?", NSFW="UNLIKELY")
            _write_part(p, [f"{base}/missing/{i:05d}.jpg" for i in range(len(p))], len(coco) + 1,
                        tmp / "laion", 1)
            n_pad = len(p)
        # classes: all of ImageNet-1k, or those the COCO captions match
        table = class_table("imagenet1k")
        keep = matched_wnids(coco["caption"].tolist()) if focus == "coco" else set(table["wnid"])
        wnid_index = {w: i for i, w in enumerate(table["wnid"])}
        # ImageNet val (flat, real names), devkit-style and CSV ground truth
        gt = pd.read_csv(ref / "ilsvrc2012-val-sample" / "ground_truth.csv").sort_values("file_name")
        gt = gt[gt["wnid"].isin(keep)]
        gt = gt.head(val_limit) if val_limit else gt
        for name in gt["file_name"]:
            _link(val_photos / name, tmp / "imagenet" / "val" / name)
        all_labels = read_json(ref / "eval-on-laion" / "val_imagename2wnid.json")
        write_imagenet_devkit(table.assign(gloss=table["definition"]),
                              np.asarray([wnid_index[all_labels[n]] for n in sorted(all_labels)]),
                              tmp / "imagenet" / "ILSVRC2012_devkit_t12")
        gt.to_csv(tmp / "imagenet" / "ground_truth.csv", index=False)
        # ImageNet train: the sample photos in class folders
        samples = [s for s in sorted((ref / "imagenet-sample-images").glob("n*_*.JPEG"))
                   if s.name.split("_")[0] in keep]
        for s in samples:
            _link(s, tmp / "imagenet" / "train" / s.name.split("_")[0] / s.name)
        # ImageNetV2: integer class folders + class_info.json (cid = timm's class index)
        write_class_info(table, tmp / "imagenetv2" / "class_info.json")
        # each photo in one release (photo i of a class in release i mod 3): every code path of
        # stage 06 runs on real photos, and none is scored three times
        v2_photos = [(s, s.name.split("_")[0]) for s in samples] + [
            (val_photos / name, w) for name, w in zip(gt["file_name"], gt["wnid"])]
        folders = [tmp / "imagenetv2" / v.folder for v in IMAGENETV2_VERSIONS.values()]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        dealt: dict[str, int] = {}
        for photo, w in v2_photos:
            i = dealt[w] = dealt.get(w, -1) + 1
            _link(photo, folders[i % len(folders)] / str(wnid_index[w]) / f"{photo.stem}.jpeg")
        # ImageNet-Captions (real form, synthetic text that says so)
        heads = dict(zip(table["wnid"], table["head"]))
        lemmas = dict(zip(table["wnid"], table["lemmas"]))
        recs = pd.DataFrame([{"filename": s.name, "wnid": (w := s.name.split("_")[0]),
                              "title": f"{heads[w]} ({SYNTHETIC})", "tags": list(lemmas[w])[:3],
                              "description": f"a photo of a {heads[w]}"} for s in samples])
        write_imagenet_captions(recs, tmp / "imagenet-captions" / "imagenet_captions.json")
        if clip:  # a random-weight CLIP checkpoint for the CLIP slots
            (tmp / "models").mkdir()
            save_random_checkpoint("ViT-B-32", tmp / CLIP_FILE, seed=seed)
        write_json({"port": int(port), "base_url": base, "focus": focus, "reference": str(ref),
                    "laion_rows": {"coco": len(coco), "padding_404": n_pad},
                    "coco_photos": len(photos), "classes": len(keep), "val_photos": len(gt),
                    "train_photos": len(samples),
                    "synthetic": ["imagenet-captions text", "devkit ILSVRC2012_ID numbering",
                                  "ImageNetV2 releases (sample + val photos)",
                                  "CLIP weights (random)"],
                    "part_name": LAION_PART_NAME}, tmp / "rehearsal.json")
    return out


def serve(out: str | os.PathLike = DEFAULT_OUT, port: int | None = None) -> ImageHost:
    """An ``ImageHost`` publishing ``out/http`` on the port the rehearsal was built for (started;
    stop it with ``.stop()`` or use it as a context manager)."""
    out = resolve(out)
    if not (out / "rehearsal.json").is_file():
        raise FileNotFoundError(f"{out}/rehearsal.json not found: run `python -m laionet.demo.rehearsal build` first")
    return ImageHost(out / "http", port=int(port or read_json(out / "rehearsal.json")["port"])).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laionet.demo.rehearsal", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="lay the real assets out in the real formats")
    b.add_argument("--port", type=int, default=DEFAULT_PORT)
    b.add_argument("--pad", type=int, default=10_000, help="real captions without photos (404)")
    b.add_argument("--focus", choices=["all", "coco"], default="all",
                   help="coco: only the classes the COCO captions match (small)")
    b.add_argument("--val-limit", type=int, default=0)
    s = sub.add_parser("serve", help="serve the photos on 127.0.0.1 until Ctrl-C")
    s.add_argument("--port", type=int, default=None)
    for p in (b, s):
        p.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        out = build(args.out, args.port, args.pad, args.focus, args.val_limit)
        print(json.dumps(read_json(out / "rehearsal.json"), indent=2))
        return 0
    with serve(args.out, args.port) as host, contextlib.suppress(KeyboardInterrupt):
        print(f"serving {Path(args.out) / 'http'} at {host.base_url} (Ctrl-C stops)", flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
