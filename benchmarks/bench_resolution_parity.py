"""Measurement: what stage 04's `resolution_parity` changes on real ImageNet val photos.

The paper decodes ImageNet val at full size while LAIONet reaches the classifiers as stage 03
stored it (resized by img2dataset, re-encoded). `resolution_parity=True` sends ImageNet val
through img2dataset's own resizer with the download's settings first. This runs the 677 real
ILSVRC2012 val photos of ../shared/reference through stage 04's code path
(``classifier_predictor`` -> ``imagenet_records`` -> ``evaluate``) both ways, with the three real
EfficientNet-Lite models, and prints each model's top-1 / top-5 both ways and the difference
(paired: the same photos, so its SE is that of the discordant pairs).

The reference photos are rescaled copies (227x227), so at the default settings (smaller side
256, `resize_only_if_bigger` False) parity is an upsample + JPEG re-encode; `--image-size 160`
shows the other direction (LAIONet stored smaller than the classifiers' input).

    python benchmarks/bench_resolution_parity.py [--image-size 256] [--limit 677]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

MODELS = "efficientnet-lite0,efficientnet-lite1,efficientnet-lite2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=256, help="the download's smaller side")
    ap.add_argument("--resize-only-if-bigger", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0: all 677)")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from laionet.jobs.evaluation import imagenet_records
    from laionet.jobs.inference import classifier_predictor, evaluate
    from laionet.models.classifiers import read_classifier_specs
    from laionet.models.labels import label_space_wnids

    ref = Path(os.environ.get("LAIONET_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))
    root = ref / "ilsvrc2012-val-sample"
    gt = pd.read_csv(root / "ground_truth.csv")
    if args.limit:
        gt = gt.head(args.limit)
    val = pd.DataFrame({"image_key": gt["file_name"], "wnid": gt["wnid"],
                        "path": [str(root / "images" / f) for f in gt["file_name"]]})
    settings = {"image_size": args.image_size, "resize_mode": "keep_ratio",
                "resize_only_if_bigger": args.resize_only_if_bigger, "encode_format": "jpg"}
    preds = [classifier_predictor(c, label_space_wnids("imagenet1k"))
             for c in read_classifier_specs(MODELS)]
    runs = {}
    for label, resize in (("full size (paper)", None), ("parity", settings)):
        runs[label] = evaluate(imagenet_records(val, resize), preds, "ImageNet",
                               batch_size=args.batch_size).to_pandas().set_index(
                                   ["model", "image_key"])
    a, b = runs["full size (paper)"], runs["parity"].loc[runs["full size (paper)"].index]
    print(f"{len(val)} ImageNet val photos; parity = {settings}")
    print(f"{'model':<20} {'k':>2} {'full size':>10} {'parity':>8} {'change':>8} {'paired SE':>10}")
    for model in a.index.get_level_values("model").unique():
        for k in (1, 5):
            x = a.loc[model, f"correct{k}"].astype(float).to_numpy()
            y = b.loc[model, f"correct{k}"].astype(float).to_numpy()
            d = y - x
            se = float(d.std(ddof=1) / np.sqrt(len(d)))
            print(f"{model:<20} {k:>2} {x.mean():>10.4f} {y.mean():>8.4f} {d.mean():>+8.4f} {se:>10.4f}")


if __name__ == "__main__":
    main()
