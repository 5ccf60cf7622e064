"""Load an open_clip model from a pretrained tag, a local checkpoint file, or random weights."""

from __future__ import annotations

import os
import warnings
from typing import Any

from .common import weights_id

RANDOM = "random"


def open_clip_name(arch: str, weights: str) -> str:
    """A stable cache id: ``open_clip-<arch>-<tag>``, the file's stem, or a loud RANDOM-INIT."""
    if weights == RANDOM:
        return f"open_clip-{arch}-RANDOM-INIT"
    if os.path.sep in weights or os.path.isfile(weights):
        return f"open_clip-{arch}-file-{weights_id(weights)}"
    return f"open_clip-{arch}-{weights}"


def load_open_clip(arch: str, weights: str, device: str) -> tuple[Any, Any, Any]:
    """(model in eval mode on ``device``, eval image transform, tokenizer).

    ``weights`` is an open_clip pretrained tag (needs the hub or its cache), a checkpoint file
    (.bin/.pt/.safetensors; use e.g. ``ViT-B-32-quickgelu`` for OpenAI's weights from a file) or
    ``random`` (randomly initialised, for tests and benchmarks only).
    """
    import open_clip

    if arch not in open_clip.list_models():
        raise ValueError(f"open_clip has no architecture {arch!r}; see open_clip.list_models()")
    kwargs: dict[str, Any] = {}
    if weights == RANDOM:
        warnings.warn(f"open_clip {arch}: RANDOMLY INITIALISED weights (tests/benchmarks only)",
                      stacklevel=3)
        pretrained = None
    elif os.path.isfile(weights):
        pretrained = weights
    else:
        tag_cfg = open_clip.get_pretrained_cfg(arch, weights)
        if not tag_cfg:
            raise FileNotFoundError(
                f"open_clip {arch}: {weights!r} is neither a checkpoint file nor a known tag "
                f"(tags: {open_clip.list_pretrained_tags_by_model(arch)})")
        # OpenAI's weights were trained with QuickGELU; open_clip 3 only warns about a mismatch.
        kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
        pretrained = weights
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, device=device, **kwargs)
    except RuntimeError as e:
        if pretrained is not None and not os.path.isfile(pretrained):
            raise RuntimeError(
                f"open_clip {arch}:{weights}: the weights could not be fetched ({e}). Offline? "
                f"Download them once on a machine with internet (they land in the HF cache), or "
                f"pass a local checkpoint file: 'open_clip:{arch}:/path/to/open_clip_model.safetensors'"
            ) from e
        raise
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(arch)
