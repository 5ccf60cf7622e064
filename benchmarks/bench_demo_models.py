"""Where the demo's first run went, and what each speed-up buys (issue: minutes, not hours).

On a demo world's own images, each measured in the same run as its baseline (median of
``--repeats``, ratio = baseline / new):
1. the classifiers: the old ones (regnetx_002, mobilenetv3_small_100, tinynet_e at 64 px on all
   cores) against timm's test_resnet/test_efficientnet/test_convnext at 32 px on one thread,
   seconds per training epoch, and each one's val/LAION top-1 after the world's epochs;
2. the threads: one classifier epoch on 1 thread against 2;
3. RapidOCR's detector input: 736 px (its default) against 128 px, CPU seconds per image and
   how many of the class names written into the images it finds;
4. text embedding: every caption against each distinct caption once (all-MiniLM-L6-v2).

    PYTHONPATH=lib python benchmarks/bench_demo_models.py [--world runs/demo/00_demo_world/world]
        [--repeats 3] [--skip-accuracy] [--out benchmarks/results/demo_models.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

OLD_ARCHS = ["regnetx_002", "mobilenetv3_small_100", "tinynet_e"]


def _median(fn, repeats, clock=time.perf_counter):
    """(median seconds of ``repeats`` calls of ``fn`` on ``clock``, the last call's result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default=str(ROOT / "runs/demo/00_demo_world/world"))
    ap.add_argument("--size", default="demo", help="world size to build when --world is missing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ocr-images", type=int, default=60, help="images with and without text")
    ap.add_argument("--skip-accuracy", action="store_true", help="time epochs only")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import timm
    import torch

    from laionet.demo import build_world, checks, models
    from laionet.demo.world import SIZES
    from laionet.jobs.ocr import load_engine
    from laionet.method.recognised_text import names_in_text
    from laionet.models import load_text_encoder

    world = build_world(args.world, size=args.size, train_models=False)
    cfg = SIZES[world.info()["size"]]
    sets = checks.comparison_sets(world)
    wnids = world.classes_txt.read_text().split()
    train = sets[sets["set"] == checks.IMAGE_SET]
    px64, labels = world.images(train["path"]), train["label"].to_numpy()
    px32 = models.shrink(px64, cfg.model_input)
    tests = {t: (world.images(s["path"]), s["label"].to_numpy())
             for t in (checks.VAL_SET, checks.NATURAL_SET) for s in [sets[sets["set"] == t]]}
    result: dict = {"world": world.info()["size"], "n_train": len(labels), "repeats": args.repeats}

    def train(arch, px, epochs, threads):
        with tempfile.TemporaryDirectory() as d:
            models.train_classifier(arch, px, labels, wnids, Path(d), epochs=epochs, threads=threads)
            model = timm.create_model(arch, num_classes=len(wnids))
            model.load_state_dict(torch.load(Path(d) / f"{arch}.pth"))
        return model.eval()

    def top1(model, px):
        mean, std = models.channel_stats(px)
        out = {}
        for name, (images, y) in tests.items():
            with torch.no_grad():
                x = models.to_tensor(models.shrink(images, px.shape[1]), mean, std)
                out[name] = round(float((model(x).argmax(1).numpy() == y).mean()), 4)
        return out

    # 1. classifiers, seconds per epoch (old: 64 px, 2 threads as before; new: 32 px, 1 thread)
    rows = []
    for old, new in zip(OLD_ARCHS, models.DEMO_CLASSIFIER_ARCHS):
        t_old, _ = _median(lambda old=old: train(old, px64, 1, 2), args.repeats)
        t_new, _ = _median(lambda new=new: train(new, px32, 1, 1), args.repeats)
        row = {"old": old, "new": new, "old_s_per_epoch": round(t_old, 2),
               "new_s_per_epoch": round(t_new, 2), "ratio": round(t_old / t_new, 1),
               "old_s_world": round(t_old * 8, 1),
               "new_s_world": round(t_new * cfg.classifier_epochs, 1)}
        if not args.skip_accuracy:
            row["new_top1"] = top1(train(new, px32, cfg.classifier_epochs, 1), px32)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["classifiers"] = rows

    # 2. one thread against two, one epoch of the first new classifier (1 thread: timed above)
    arch, t1 = models.DEMO_CLASSIFIER_ARCHS[0], rows[0]["new_s_per_epoch"]
    t2, _ = _median(lambda: train(arch, px32, 1, 2), args.repeats)
    result["threads"] = {"arch": arch, "s_1_thread": round(t1, 2), "s_2_threads": round(t2, 2),
                         "ratio_2_over_1": round(t2 / t1, 2)}
    print(json.dumps(result["threads"]), flush=True)

    # 3. RapidOCR's detector input on the world's LAION images, with and without written names
    laion = world.truth_table("laion")
    ok = laion[laion["file_status"] == "ok"]
    with_text = ok[ok["text_in_image"].notna()].head(args.ocr_images)
    clean = ok[ok["text_in_image"].isna()].head(args.ocr_images)
    img_t, img_c = world.images(with_text["path"]), world.images(clean["path"])
    ocr = {}
    for side in (736, 128):
        engine = load_engine("rapidocr", detector_side=side)

        def read_all(engine=engine):
            found = sum(names_in_text(engine.read(a), [n])
                        for a, n in zip(img_t, with_text["text_in_image"]))
            return found, sum(bool(engine.read(a).strip()) for a in img_c)

        cpu, (found, nonempty) = _median(read_all, args.repeats, time.process_time)
        ocr[side] = {"cpu_s_per_image": round(cpu / (len(img_t) + len(img_c)), 4),
                     "names_found": f"{found}/{len(img_t)}",
                     "text_on_clean_images": f"{nonempty}/{len(img_c)}"}
    ocr["ratio"] = round(ocr[736]["cpu_s_per_image"] / ocr[128]["cpu_s_per_image"], 1)
    result["ocr"] = ocr
    print(json.dumps(ocr), flush=True)

    # 4. every caption against each distinct caption once
    enc = load_text_encoder("minilm", device="cpu")
    texts = laion["TEXT"].dropna().tolist()[:6000]
    once = list(dict.fromkeys(texts))
    t_all, _ = _median(lambda: enc.model.encode(texts, batch_size=64), args.repeats)
    t_once, _ = _median(lambda: enc.embed_texts(texts), args.repeats)
    result["text"] = {"captions": len(texts), "distinct": len(once), "s_all": round(t_all, 2),
                      "s_distinct": round(t_once, 2), "ratio": round(t_all / t_once, 2)}
    print(json.dumps(result["text"]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
