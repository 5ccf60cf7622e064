"""The demo world's models on synthetic coloured shapes: the classifier learns and loads through
timm's checkpoint-file path; the tower puts same-class images (and their texts) together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from laionet.demo.models import DEMO_CLASSIFIER_ARCHS, train_classifier, train_image_tower
from laionet.models import load_image_encoder, load_text_encoder

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
RGB = np.array([[.9, .1, .1], [.1, .8, .1], [.1, .2, .9], [.9, .9, .1]])


def shapes(n_per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4 classes: class c is a ``SHAPES[c]`` in ``COLOURS[c]`` at a random place and scale on a
    random dark background, with pixel noise."""
    rng = np.random.default_rng(seed)
    n = 4 * n_per_class
    labels = np.repeat(np.arange(4), n_per_class)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy = rng.uniform(0.35, 0.65, (2, n, 1, 1))
    r = rng.uniform(0.18, 0.3, (n, 1, 1))
    dx, dy = np.abs(xx - cx), np.abs(yy - cy)
    masks = np.stack([dx ** 2 + dy ** 2 < r ** 2, (dx < r) & (dy < r),
                      ((yy - cy) > -r) & (dx < ((yy - cy) + r) / 2),
                      ((dx < r) & (dy < r / 3)) | ((dy < r) & (dx < r / 3))])
    mask = masks[labels, np.arange(n)]
    img = rng.uniform(0, 0.35, (n, 1, 1, 3)) + rng.normal(0, 0.04, (n, size, size, 3))
    img = np.where(mask[..., None], RGB[labels][:, None, None] + rng.normal(0, 0.05, (n, 1, 1, 3)),
                   img)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def data():
    return shapes(40, 32, seed=0), shapes(12, 32, seed=1)


def test_classifier_learns_and_loads_through_timm_file_path(data, tmp_path):
    import timm

    (x, y), (xv, yv) = data
    wnids = ["n01000001", "n01000002", "n01000003", "n01000004"]
    arch = DEMO_CLASSIFIER_ARCHS[0]
    path = train_classifier(arch, x, y, wnids, tmp_path, seed=0, epochs=6)
    assert path == tmp_path / f"{arch}.pth"
    assert (tmp_path / f"{arch}.wnids.txt").read_text().split() == wnids
    cfg = json.loads((tmp_path / f"{arch}.json").read_text())
    assert cfg["num_classes"] == 4 and cfg["input_size"] == [3, 32, 32]

    # timm's checkpoint-file path, as the evaluation stage loads a classifier.
    model = timm.create_model(arch, pretrained=True, num_classes=4,
                              pretrained_cfg_overlay=dict(cfg, file=str(path))).eval()
    saved = torch.load(path, weights_only=True)
    for k, v in model.state_dict().items():  # every weight, the classifier included
        torch.testing.assert_close(v, saved[k], msg=f"{k} not loaded from {path}")

    data_cfg = timm.data.resolve_data_config({}, model=model)
    mean, std = np.array(data_cfg["mean"]), np.array(data_cfg["std"])

    def accuracy(images, labels):
        t = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2)).float()
        with torch.no_grad():
            return float((model(t).argmax(1).numpy() == labels).mean())

    assert accuracy(x, y) > 0.7 and accuracy(xv, yv) > 0.6  # chance: 0.25


def test_classifier_training_is_deterministic(data, tmp_path):
    (x, y), _ = data
    wnids = ["a", "b", "c", "d"]
    sd = [torch.load(train_classifier(DEMO_CLASSIFIER_ARCHS[0], x[::4], y[::4], wnids,
                                      tmp_path / str(i), seed=3, epochs=1), weights_only=True)
          for i in range(2)]
    for k in sd[0]:
        torch.testing.assert_close(sd[0][k], sd[1][k], rtol=0, atol=0)


def test_classifier_rejects_bad_labels(data, tmp_path):
    (x, y), _ = data
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        train_classifier(DEMO_CLASSIFIER_ARCHS[0], x, y, ["a", "b", "c"], tmp_path)


def test_tower_embeds_classes_apart_and_near_their_text(data, tmp_path):
    (x, y), (xv, yv) = data
    rng = np.random.default_rng(0)
    templates = ("a {c} {s}", "photo of a {c} {s} on sale", "{s}, {c}, best price", "my {c} {s}")
    captions = [templates[rng.integers(4)].format(c=COLOURS[c], s=SHAPES[c]) for c in y]
    text = load_text_encoder("minilm", device="cpu")
    path = train_image_tower(x, captions, tmp_path / "tower.safetensors", seed=0, epochs=8,
                             batch_size=32, text_encoder=text)
    enc = load_image_encoder(f"demo-tower:{path}", device="cpu")
    assert enc.dim == 384

    from PIL import Image
    batch = torch.stack([enc.preprocess(Image.fromarray(im)) for im in xv])
    emb = enc.embed_images(batch)
    sims = emb @ emb.T
    same = yv[:, None] == yv[None, :]
    off_diag = ~np.eye(len(yv), dtype=bool)
    assert sims[same & off_diag].mean() > sims[~same].mean() + 0.2

    # Zero-shot: the nearest class text (MiniLM) is the right class for most held-out images.
    class_text = text.embed_texts([f"a {c} {s}" for c, s in zip(COLOURS, SHAPES)])
    assert ((emb @ class_text.T).argmax(1) == yv).mean() > 0.6
