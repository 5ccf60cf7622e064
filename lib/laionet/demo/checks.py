"""Checks of the demo world's causal structure against its hidden truth (notebook 00, tests).

- typicality: image-selected ImageNet-mini vs text-selected LAION images of the same classes;
- intra-class similarity: mean pairwise cosine within a class, on pixel vectors (always) or the
  demo tower's embeddings (when trained);
- classifier accuracy: ImageNet-mini val vs natural-distribution (LAION) images of the classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .world import WorldPaths

TEXT_SELECTED_KINDS = ("unique", "nested", "two_classes")


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

    from laionet.encoders import load_image_encoder

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
