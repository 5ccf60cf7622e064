"""Checks of the demo world's causal structure against its hidden truth (notebook 00, tests):
1. image-selected ImageNet-mini is more typical than text-selected LAION (``typicality_raised``);
2. and more similar within classes (paper A14), on pixel vectors and the demo tower's embeddings
   (``intra_class_summary``, ``imagenet_more_similar``);
3. classifiers trained on it lose accuracy on natural (LAION) images (``accuracy_table``,
   ``classifiers_lose_accuracy``). The notebook asserts the verdicts; figures: ``demo.plots``."""

import numpy as np
import pandas as pd
import torch
from PIL import Image

from laionet.demo.models import shrink, to_tensor
from laionet.demo.sampling import KINDS
from laionet.demo.world import WorldPaths
from laionet.models import load_image_encoder
from laionet.models.classifiers import demo_classifiers, load_classifier

TEXT_SELECTED_KINDS = ("unique", "nested", "two_classes")
TEXT_SET, IMAGE_SET = "LAION text-selected", "ImageNet-mini train"  # text- vs image-selected
VAL_SET, NATURAL_SET = "ImageNet-mini val", "LAION natural"
MIN_TYPICALITY_GAP = 0.05  # image-based selection must raise mean typicality by more than this


def comparison_sets(world: WorldPaths) -> pd.DataFrame:
    """Image sets to compare, one row per image: set, path, wnid, label, typicality.

    ``LAION text-selected``: LAION-mini images of a class whose caption names that class (what a
    caption-only selection such as LAIONet keeps, before any threshold), readable files only.
    ``LAION natural``: every readable LAION-mini image of a class, named in its caption or not.
    ``ImageNet-mini train`` / ``val``: annotator-accepted images (image-based selection).
    """
    laion = world.truth_table("laion")
    ok = laion[(laion["file_status"] == "ok") & (laion["label"] >= 0)]
    named = ok[ok["kind"].isin(TEXT_SELECTED_KINDS) & (ok["mention"] == ok["label"])]
    imagenet = world.truth_table("imagenet")
    imagenet = imagenet[imagenet["label"] == imagenet["query"]]  # its wnid is its true class
    cols = ["path", "label", "typicality"]
    out = pd.concat([named[cols].assign(set=TEXT_SET), ok[cols].assign(set=NATURAL_SET)] + [
        imagenet.loc[imagenet["dataset"] == f"imagenet_{split}", cols].assign(
            set=f"ImageNet-mini {split}") for split in ("train", "val")], ignore_index=True)
    out["wnid"] = np.asarray(world.classes_txt.read_text().split())[out["label"].to_numpy()]
    return out


def pixel_embeddings(images: np.ndarray, size: int = 16) -> np.ndarray:
    """Down-sampled, per-image centred, L2-normalised pixel vectors (a model-free embedding)."""
    n, h, _, c = images.shape
    f = h // size
    x = images.reshape(n, size, f, size, f, c).mean((2, 4)).reshape(n, -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def intra_class_similarity(emb: np.ndarray, labels: np.ndarray, max_per_class: int = 60,
                           seed: int = 0) -> pd.DataFrame:
    """Per class: mean of the strictly-lower-triangle cosine similarities (paper A14), on at most
    ``max_per_class`` images drawn with ``seed``. Classes with < 2 images are left out (listed
    with n and a NaN mean, not dropped silently)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        e = emb[idx]
        tri = (e @ e.T)[np.tril_indices(len(idx), -1)]  # e @ e.T: numpy's symmetric product
        rows.append((int(c), len(idx), float(tri.mean()) if len(tri) else np.nan))
    return pd.DataFrame(rows, columns=["label", "n", "mean_similarity"])


def class_names(world: WorldPaths) -> dict[int, str]:
    """World class index -> head name."""
    classes = world.truth_table("classes")
    return dict(zip(classes["label"], classes["head"]))


def caption_samples(laion: pd.DataFrame, names: dict[int, str], seed: int = 0,
                    per_kind: int = 3) -> pd.DataFrame:
    """``per_kind`` LAION-mini rows of each caption kind (drawn with ``seed``): kind, TEXT, the
    class the image shows and its typicality."""
    sample = pd.concat([laion[laion["kind"] == k].sample(min(per_kind, (laion["kind"] == k).sum()),
                                                         random_state=seed) for k in KINDS])
    sample["image shows"] = sample["label"].map(names).fillna("(no class)")
    return sample[["kind", "TEXT", "image shows", "typicality"]]


def typicality_summary(sets: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """count/mean/median typicality per set, and the mean gap image- minus text-selected."""
    typ = sets.groupby("set")["typicality"].agg(["count", "mean", "median"])
    return typ, typ.loc[IMAGE_SET, "mean"] - typ.loc[TEXT_SET, "mean"]


def typicality_raised(gap: float) -> bool:
    """Check 1: image-based selection keeps more typical images than text-based selection."""
    return bool(gap > MIN_TYPICALITY_GAP)


def set_embeddings(world: WorldPaths, sets: pd.DataFrame,
                   names: tuple[str, ...] = (TEXT_SET, IMAGE_SET)
                   ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The images of the ``names`` sets (rows of ``sets``, order kept) and their embeddings by
    encoder: ``pixels`` always, ``demo tower`` when the world has a trained tower."""
    compare = sets[sets["set"].isin(list(names))].reset_index(drop=True)
    pixels = world.images(compare["path"])
    embeddings = {"pixels": pixel_embeddings(pixels)}
    if (ckpt := world.model_files().get("image_tower")) is not None:
        enc, batch = load_image_encoder(f"demo-tower:{ckpt}", device="cpu"), 512
        embeddings["demo tower"] = np.concatenate([enc.embed_images(torch.stack(
            [enc.preprocess(Image.fromarray(a)) for a in pixels[lo:lo + batch]]))
            for lo in range(0, len(pixels), batch)])
    return compare, embeddings


def intra_class_summary(compare: pd.DataFrame, embeddings: dict[str, np.ndarray],
                        seed: int = 0) -> pd.DataFrame:
    """Per encoder: mean intra-class similarity of LAION text-selected and ImageNet-mini train
    images (means over classes), their mean per-class ``delta`` (ImageNet minus LAION) and the
    share of classes where ImageNet-mini is more similar (``share_imagenet_higher``)."""
    rows = []
    for enc, emb in embeddings.items():
        for s in (TEXT_SET, IMAGE_SET):
            m = (compare["set"] == s).to_numpy()
            r = intra_class_similarity(emb[m], compare["label"].to_numpy()[m], seed=seed)
            rows.append(r.assign(encoder=enc, set=s))
    sim = pd.concat(rows, ignore_index=True)
    wide = sim.pivot_table(index=["encoder", "label"], columns="set", values="mean_similarity")
    wide["delta"] = wide[IMAGE_SET] - wide[TEXT_SET]
    return wide.groupby("encoder").agg(laion=(TEXT_SET, "mean"), imagenet=(IMAGE_SET, "mean"),
                                       delta=("delta", "mean"),
                                       share_imagenet_higher=("delta", lambda d: (d > 0).mean()))


def imagenet_more_similar(summary: pd.DataFrame) -> bool:
    """Check 2: for every encoder, ImageNet-mini is more similar within classes on average."""
    return bool((summary["delta"] > 0).all())


def accuracy_table(world: WorldPaths, sets: pd.DataFrame,
                   batch: int = 256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-1 of every trained classifier on ImageNet-mini val and on LAION natural images: the
    long table (arch, n, top1, test) and the wide one (one row per arch, the two top-1s and their
    ``drop``); both empty when the world has no trained models. Each classifier is loaded as
    stage 04 loads it (timm's checkpoint-file path, its own input size and normalisation)."""
    if not world.model_files():
        return (pd.DataFrame(columns=["arch", "n", "top1", "test"]),
                pd.DataFrame(columns=[VAL_SET, NATURAL_SET, "drop"], index=pd.Index([], name="arch")))
    wnids = world.classes_txt.read_text().split()
    tests = [(t, world.images(sub["path"]), sub["label"].to_numpy())
             for t in (VAL_SET, NATURAL_SET) for sub in [sets[sets["set"] == t]]]
    rows = []
    for spec in demo_classifiers(world.models):
        model, cfg = load_classifier(spec)
        to_world = np.array([wnids.index(w) for w in spec.output_wnids])  # outputs -> world labels
        for test, images, labels in tests:
            with torch.no_grad():
                pred = to_world[np.concatenate([model(to_tensor(
                    shrink(images[lo:lo + batch], cfg["input_size"][-1]), cfg["mean"],
                    cfg["std"])).argmax(1).numpy() for lo in range(0, len(images), batch)])]
            rows.append((spec.arch, len(labels), float((pred == labels).mean()), test))
    acc = pd.DataFrame(rows, columns=["arch", "n", "top1", "test"])
    table = acc.pivot(index="arch", columns="test", values="top1")
    table["drop"] = table[VAL_SET] - table[NATURAL_SET]
    return acc, table


def classifiers_lose_accuracy(table: pd.DataFrame, n_classes: int) -> tuple[bool | None, str]:
    """Check 3: every trained classifier learnt the classes (val top-1 above twice chance) and
    most of them lose accuracy on LAION natural images. False (with the reason) when one did not
    learn; None only when there is nothing to test (no models trained)."""
    if table.empty:
        return None, "no models trained (train_models=False): classifier check skipped"
    chance2 = 2 / n_classes
    weak = sorted(table.index[~(table[VAL_SET] > chance2)])
    if weak:
        return False, (f"{weak} do not beat 2x chance ({chance2:.2f}) on ImageNet-mini val: "
                       "the demo classifiers did not learn the classes")
    losing = table["drop"] > 0
    return bool(losing.mean() >= 0.5), (f"{int(losing.sum())} of {len(losing)} classifier(s) "
                                        f"(all above 2x chance, {chance2:.2f}, on ImageNet-mini "
                                        "val) lose accuracy on LAION natural")
