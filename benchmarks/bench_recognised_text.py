"""Which OCR engine finds a class name written into a real photo? (the recognised-text step, A7)

Real photos from ../shared/reference (ImageNet sample images, one per class, and COCO-mini), resized
as stage 03 stores them (smaller side 256), each once as it is and once with a word drawn on it
(``laionet.demo.text.text_pairs``: several sizes, angles, colours, cases): on an ImageNet photo its
own class name (the case the TMLR exclusion is for), on a COCO photo another class name or a
common word. For each installed engine: recall (the word is found under the authors' rule),
false-flag rate (the word is "found" on the clean photo) and CPU seconds per image.

    PYTHONPATH=lib python benchmarks/bench_recognised_text.py [--n 60] [--engines easyocr,rapidocr,tesseract]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
REFERENCE = Path(os.environ.get("LAIONET_REFERENCE", ROOT.parent / "shared" / "reference"))

OTHER_WORDS = ("sale", "coffee", "welcome home", "free shipping", "tiger", "goldfish", "daisy",
               "pizza", "best price", "park", "volcano", "lighthouse", "teddy", "summer")


def benchmark_photos(n: int, reference: Path = REFERENCE):
    """``n`` photos and their words: half ImageNet sample images (word: their own class label
    from the file name), half COCO-mini photos (word: from OTHER_WORDS), evenly spaced."""
    from PIL import Image

    inet = sorted((reference / "imagenet-sample-images").glob("n*.JPEG"))
    coco = sorted((reference / "coco-mini").glob("*2017/*.jpg"))
    if not inet or not coco:
        raise FileNotFoundError(f"reference photos not found under {reference}")
    k = n // 2
    pick_i = [inet[int(i * len(inet) / k)] for i in range(k)]
    pick_c = [coco[int(i * len(coco) / (n - k))] for i in range(n - k)]
    photos, words = [], []
    for p in pick_i:
        photos.append(Image.open(p).convert("RGB"))
        words.append(p.stem.split("_", 1)[1].replace("_", " "))
    for i, p in enumerate(pick_c):
        photos.append(Image.open(p).convert("RGB"))
        words.append(OTHER_WORDS[i % len(OTHER_WORDS)])
    return photos, words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="photos (each clean and with text)")
    ap.add_argument("--engines", default="easyocr,rapidocr,tesseract")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="write the per-pair texts here (JSON)")
    args = ap.parse_args()

    from laionet.demo.text import text_pairs
    from laionet.jobs import ocr as rt

    photos, words = benchmark_photos(args.n)
    pairs = text_pairs(photos, words, seed=args.seed)
    report = []
    for name in args.engines.split(","):
        t0 = time.perf_counter()
        kw = {} if name == "tesseract" else {"n_threads": args.threads}
        try:
            eng = rt.load_engine(name, **kw)
        except (ImportError, FileNotFoundError) as exc:
            print(f"{name}: not available ({exc})")
            continue
        load_s = time.perf_counter() - t0
        m = rt.measure(eng, pairs)
        rows = m.pop("rows")
        m["load_s"] = round(load_s, 2)
        report.append({**m, "pairs": rows.to_dict("records")})
        print(f"{m['engine']:32s} recall {m['recall']:.3f}  false-flag {m['false_flag_rate']:.3f}  "
              f"clean photos with any text {m['clean_with_any_text']:.2f}  "
              f"{m['s_per_image']:.2f} s/image wall, {m['cpu_s_per_image']:.2f} CPU-s/image "
              f"(load {load_s:.1f} s)", flush=True)
        for r in rows[~rows["hit"]].itertuples():
            print(f"    missed {r.word!r} {r.style['font_px']}px {r.style['angle']:+.0f}deg "
                  f"{r.style['case']}: read {r.text_with[:60]!r}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
