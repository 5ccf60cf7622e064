"""Checks of the demo world's causal structure against its hidden truth (notebook 00, tests).

- typicality: image-selected ImageNet-mini vs text-selected LAION images of the same classes
  (``typicality_summary``; check ``typicality_raised``);
- intra-class similarity: mean pairwise cosine within a class, on pixel vectors (always) or the
  demo tower's embeddings (when trained) (``set_embeddings``, ``intra_class_summary``; check
  ``imagenet_more_similar``);
- classifier accuracy: ImageNet-mini val vs natural-distribution (LAION) images of the classes
  (``accuracy_table``; check ``classifiers_lose_accuracy``).
Each check returns a verdict the notebook asserts; the figures are ``laionet.demo.plots``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from laionet.demo.world import WorldPaths
from laionet.models import load_image_encoder
from laionet.demo.sampling import KINDS

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
    parts = [named[cols].assign(set="LAION text-selected"), ok[cols].assign(set="LAION natural")]
    for split in ("train", "val"):
        sub = imagenet[imagenet["dataset"] == f"imagenet_{split}"]
        parts.append(sub[cols].assign(set=f"ImageNet-mini {split}"))
    out = pd.concat(parts, ignore_index=True)
    wnids = world.classes_txt.read_text().split()
    out["wnid"] = np.asarray(wnids)[out["label"].to_numpy()]
    return out


def load_images(world: WorldPaths, paths: pd.Series) -> np.ndarray:
    """[n, H, W, 3] uint8, decoded as RGB."""
    return np.stack([np.asarray(Image.open(world.root / p).convert("RGB")) for p in paths])


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
        s = e @ e.T
        tri = s[np.tril_indices(len(idx), -1)]
        rows.append((int(c), len(idx), float(tri.mean()) if len(tri) else np.nan))
    return pd.DataFrame(rows, columns=["label", "n", "mean_similarity"])


def tower_embeddings(world: WorldPaths, images: np.ndarray, batch: int = 512) -> np.ndarray | None:
    """The demo tower's embeddings of ``images`` when the world has a trained tower, else None."""
    info = world.info().get("models") or {}
    if not info.get("image_tower"):
        return None
    import torch

    enc = load_image_encoder(f"demo-tower:{world.models / info['image_tower']}", device="cpu")
    out = []
    for lo in range(0, len(images), batch):
        x = torch.stack([enc.preprocess(Image.fromarray(a)) for a in images[lo:lo + batch]])
        out.append(enc.embed_images(x))
    return np.concatenate(out)


def classifier_accuracy(world: WorldPaths, images: np.ndarray, labels: np.ndarray,
                        batch: int = 256) -> pd.DataFrame:
    """Top-1 accuracy of every trained demo classifier on ``images`` (label = world class index).

    Loads each checkpoint the way real weights are loaded: timm's pretrained-file path.
    """
    info = world.info().get("models") or {}
    rows = []
    if not info.get("classifiers"):
        return pd.DataFrame(columns=["arch", "n", "top1"])
    import timm
    import torch

    for arch, rel in sorted(info["classifiers"].items()):
        path = world.models / rel
        cfg = json.loads(path.with_name(f"{arch}.json").read_text())
        model = timm.create_model(arch, pretrained=True, num_classes=cfg["num_classes"],
                                  pretrained_cfg_overlay=dict(cfg, file=str(path))).eval()
        order = path.with_name(f"{arch}.wnids.txt").read_text().split()
        wnids = world.classes_txt.read_text().split()
        to_world = np.array([wnids.index(w) for w in order])
        mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        pred = []
        with torch.no_grad():
            for lo in range(0, len(images), batch):
                x = torch.from_numpy(images[lo:lo + batch]).permute(0, 3, 1, 2).float() / 255
                pred.append(model((x - mean) / std).argmax(1).numpy())
        pred = to_world[np.concatenate(pred)] if pred else np.array([], dtype=int)
        rows.append((arch, len(labels), float((pred == labels).mean()) if len(labels) else np.nan))
    return pd.DataFrame(rows, columns=["arch", "n", "top1"])


def model_paths(world: WorldPaths) -> dict[str, Path]:
    """The trained checkpoint files recorded in world.json (empty without models)."""
    info = world.info().get("models") or {}
    out = {"image_tower": world.models / info["image_tower"]} if info.get("image_tower") else {}
    out.update({arch: world.models / rel for arch, rel in (info.get("classifiers") or {}).items()})
    return out


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
    pixels = load_images(world, compare["path"])
    embeddings = {"pixels": pixel_embeddings(pixels)}
    tower = tower_embeddings(world, pixels)
    if tower is not None:
        embeddings["demo tower"] = tower
    return compare, embeddings


def _share_positive(d: pd.Series) -> float:
    return (d > 0).mean()


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
                                       share_imagenet_higher=("delta", _share_positive))


def imagenet_more_similar(summary: pd.DataFrame) -> bool:
    """Check 2: for every encoder, ImageNet-mini is more similar within classes on average."""
    return bool((summary["delta"] > 0).all())


def accuracy_table(world: WorldPaths, sets: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-1 of every trained classifier on ImageNet-mini val and on LAION natural images:
    the long table (arch, n, top1, test) and the wide one (one row per arch, the two top-1s and
    their ``drop``). Both empty when the world has no trained models."""
    wide_cols = [VAL_SET, NATURAL_SET, "drop"]
    if not model_paths(world):
        return (pd.DataFrame(columns=["arch", "n", "top1", "test"]),
                pd.DataFrame(columns=wide_cols, index=pd.Index([], name="arch")))
    parts = []
    for test in (VAL_SET, NATURAL_SET):
        sub = sets[sets["set"] == test]
        parts.append(classifier_accuracy(world, load_images(world, sub["path"]),
                                         sub["label"].to_numpy()).assign(test=test))
    acc = pd.concat(parts)
    table = acc.pivot(index="arch", columns="test", values="top1")
    table["drop"] = table[VAL_SET] - table[NATURAL_SET]
    return acc, table


def classifiers_lose_accuracy(table: pd.DataFrame, n_classes: int) -> tuple[bool | None, str]:
    """Check 3: most classifiers that learnt something (val top-1 above twice chance) lose
    accuracy on LAION natural images. None (with the reason) when nothing can be tested: no
    models, or none above twice chance (a tiny world trained for a few epochs)."""
    if table.empty:
        return None, "no models trained (train_models=False): classifier check skipped"
    chance2 = 2 / n_classes
    trained = table[table[VAL_SET] > chance2]
    if trained.empty:
        return None, (f"no classifier beats 2x chance ({chance2:.2f}) on ImageNet-mini val: "
                      "too little training for this check (use the demo size)")
    losing = trained["drop"] > 0
    return bool(losing.mean() >= 0.5), (f"{int(losing.sum())} of {len(trained)} classifier(s) above "
                                        f"2x chance ({chance2:.2f}) on ImageNet-mini val lose "
                                        "accuracy on LAION natural")
