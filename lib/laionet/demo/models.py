"""The demo world's models, trained once on its images and saved as ordinary checkpoint files,
deterministic for a seed (fixed seeds, CPU, one thread: the models are small, so a second
thread costs more in synchronisation than it gains; ``benchmarks/bench_demo_models.py``):
- ``train_image_tower``: the demo "CLIP" image tower, a small CNN trained contrastively into the
  space of FROZEN all-MiniLM-L6-v2 caption embeddings, so image-image, image-text and zero-shot
  similarities all exist (loaded with ``load_image_encoder("demo-tower:<file>")``);
- ``train_classifier``: the demo's "pretrained ImageNet classifiers", timm's smallest members of
  the paper's families (ResNet, EfficientNet, ConvNeXt: timm's ``test_*`` architectures) trained
  from scratch at 32 px, loaded through timm's checkpoint-file path as real weights are.
Both train on images made smaller (``shrink``) as their saved preprocessing makes them smaller."""

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from laionet.models import load_text_encoder
from laionet.models.tower import build_tower, default_config, save_tower
from laionet.util.files import atomic_path, write_json, write_text

#: timm's smallest ResNet, EfficientNet and ConvNeXt (0.1-0.4 M parameters): each learns the
#: demo's 24 classes in seconds at 32 px on one CPU thread (benchmarks/bench_demo_models.py).
DEMO_CLASSIFIER_ARCHS: list[str] = ["test_resnet", "test_efficientnet", "test_convnext"]


@contextlib.contextmanager
def _deterministic(seed: int, threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch for the duration; global torch settings restored after."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or 1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"images: expected square images, got {images.shape[1]}x{images.shape[2]}")
    return images


def shrink(images: np.ndarray, size: int | None) -> np.ndarray:
    """Square uint8 images resized to ``size`` px as the models' saved preprocessing resizes them
    (PIL bilinear, what timm's and torchvision's Resize do to a PIL image); as they are when
    ``size`` is None or their own size."""
    images = _check_images(images)
    if size is None or size == images.shape[1]:
        return images
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
                     for a in images])


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] units (the saved normalisation)."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(0).round(4).tolist(), np.maximum(x.std(0), 1e-3).round(4).tolist()


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, H, W, 3] images as a normalised float [N, 3, H, W] batch."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _augment(x: torch.Tensor, max_shift: float, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation (up to ``max_shift`` of the width), one
    vectorised grid_sample over the batch."""
    n = x.shape[0]
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = flip, 1.0, shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _fit(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor,
         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, epochs: int,
         batch_size: int, lr: float, seed: int, extra_params: Sequence[torch.Tensor] = (),
         max_shift: float = 0.08) -> list[float]:
    """AdamW with one-cycle LR over shuffled, augmented mini-batches; returns per-epoch loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([*model.parameters(), *extra_params], lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(len(x) / batch_size), pct_start=0.2)
    history = []
    model.train()
    for _ in range(epochs):
        perm, total = torch.randperm(len(x), generator=gen), 0.0
        for start in range(0, len(x), batch_size):
            idx = perm[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples; contrastive loss needs negatives
                continue
            loss = loss_fn(model(_augment(x[idx], max_shift, gen)), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    model.eval()
    return history


def pair_sample(n: int, max_pairs: int | None, seed: int) -> np.ndarray:
    """The sorted positions of the (at most ``max_pairs``) pairs the tower trains on, seeded:
    all ``n`` when there are no more than that (pick them before decoding the images)."""
    if max_pairs is None or n <= max_pairs:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_pairs, replace=False))


def train_image_tower(images: np.ndarray, captions: Sequence[str | None], out_path: Path, *,
                      seed: int = 0, epochs: int = 8, max_pairs: int | None = 4000,
                      batch_size: int = 128, lr: float = 3e-3, text_encoder: Any = None,
                      threads: int | None = None, input_size: int | None = None) -> Path:
    """Train the demo tower on image-caption pairs and save ``out_path`` (.safetensors + .json).
    The caption side is frozen all-MiniLM-L6-v2 (or ``text_encoder``); the image side learns to
    land next to its own caption (symmetric InfoNCE, learnable temperature), on at most
    ``max_pairs`` pairs (a seeded subsample: the demo build's budget), at ``input_size`` px
    (None: the images' own size)."""
    images = _check_images(images)
    if len(captions) != len(images):
        raise ValueError(f"train_image_tower: {len(images)} images but {len(captions)} captions")
    sel = pair_sample(len(images), max_pairs, seed)
    encoder = text_encoder or load_text_encoder("minilm", device="cpu")
    text = torch.from_numpy(encoder.embed_texts([captions[i] for i in sel], batch_size=256))
    pixels = shrink(images[sel], input_size)
    mean, std = channel_stats(pixels)
    config = default_config(embed_dim=text.shape[1], input_size=pixels.shape[1],
                            text_encoder=encoder.name)
    config.update(mean=mean, std=std, seed=seed, epochs=epochs, n_pairs=len(sel),
                  loss="symmetric InfoNCE vs frozen text embeddings")
    with _deterministic(seed, threads):
        model = build_tower(config)
        log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

        def info_nce(img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
            logits = F.normalize(img, dim=1) @ txt.T * log_scale.clamp(max=math.log(100)).exp()
            labels = torch.arange(len(img))
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        history = _fit(model, to_tensor(pixels, mean, std), text, info_nce, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, extra_params=[log_scale])
    config["train_loss"] = [round(v, 4) for v in history]
    return save_tower(model, config, out_path)


def train_classifier(arch: str, images: np.ndarray, labels: np.ndarray, wnids: Sequence[str],
                     out_dir: Path, *, seed: int = 0, epochs: int = 8, batch_size: int = 32,
                     lr: float = 4e-3, threads: int | None = None,
                     input_size: int | None = None) -> Path:
    """Train ``timm.create_model(arch, num_classes=len(wnids))`` from scratch at ``input_size``
    px (None: the images' own size) and write
    ``<out_dir>/<arch>.pth`` (returned), ``<arch>.wnids.txt`` (wnid of each output) and
    ``<arch>.json`` (the pretrained_cfg ``laionet.models.classifiers.load_classifier`` reads)."""
    import timm  # not at the top: the pipeline imports this module (via the world) without timm

    images = _check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"train_classifier: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(wnids)):
        raise ValueError(f"train_classifier: labels must be in [0, {len(wnids)}) (one per wnid); "
                         f"got [{labels.min()}, {labels.max()}]")
    images = shrink(images, input_size)
    mean, std = channel_stats(images)
    with _deterministic(seed, threads):
        model = timm.create_model(arch, pretrained=False, num_classes=len(wnids))
        _fit(model, to_tensor(images, mean, std), torch.from_numpy(labels),
             lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.1),
             epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    out_dir = Path(out_dir)
    path = out_dir / f"{arch}.pth"
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(model.state_dict(), tmp)
    write_text("".join(f"{w}\n" for w in wnids), out_dir / f"{arch}.wnids.txt")
    size = images.shape[1]  # the pretrained_cfg timm reads with the file
    write_json({"architecture": arch, "input_size": [3, size, size], "mean": list(mean),
                "std": list(std), "interpolation": "bilinear", "crop_pct": 1.0,
                "crop_mode": "center", "num_classes": len(wnids)}, out_dir / f"{arch}.json")
    return path
