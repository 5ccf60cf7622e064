"""Load an open_clip model from a pretrained tag, a local checkpoint file, or random weights."""

import os
import warnings
from typing import Any

from laionet.models.common import weights_id
from laionet.util.files import atomic_path
from laionet.util.paths import resolve

RANDOM = "random"
#: safetensors metadata that marks a checkpoint file as randomly initialised (save_random_checkpoint)
RANDOM_METADATA = {"laionet.weights": "random"}


def save_random_checkpoint(arch: str, dest: str | os.PathLike, seed: int = 0) -> str:
    """Write a randomly initialised open_clip ``arch`` as a ``.safetensors`` checkpoint file whose
    metadata says so (``RANDOM_METADATA``): every output of a model loaded from it is marked
    "random weights" (``is_random_weights``). For rehearsals where no real CLIP weights exist."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    if not str(dest).endswith(".safetensors"):
        raise ValueError(f"{dest}: a random checkpoint is written as .safetensors (its metadata marks it)")
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(dest, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={**RANDOM_METADATA, "arch": arch, "seed": str(seed)})
    return str(dest)


def is_random_weights(weights: str) -> bool:
    """True for the ``random`` tag and for checkpoint files marked by ``save_random_checkpoint``."""
    if weights == RANDOM:
        return True
    weights = local_weights(weights)
    if not (str(weights).endswith(".safetensors") and os.path.isfile(weights)):
        return False
    from safetensors import safe_open

    with safe_open(weights, framework="pt") as f:
        meta = f.metadata() or {}
    return all(meta.get(k) == v for k, v in RANDOM_METADATA.items())


def random_weight_specs(values) -> list[str]:
    """The open_clip specs among ``values`` (strings, lists of strings) that carry random weights:
    what a figure title must name."""
    out = set()
    for s in (s for v in values for s in (v if isinstance(v, (list, tuple)) else [v])):
        if isinstance(s, str) and s.startswith("open_clip:"):
            arch, _, weights = s.partition(":")[2].partition(":")
            if weights and is_random_weights(os.path.expanduser(weights)):
                out.add(f"open_clip {arch}")
    return sorted(out)


def local_weights(weights: str) -> str:
    """A checkpoint path as given, or resolved against the project root when it is relative and
    only exists there (profiles name files relative to the root; notebooks may run elsewhere)."""
    if weights == RANDOM or os.path.isabs(weights) or os.path.isfile(weights):
        return weights
    cand = resolve(weights)
    return str(cand) if cand.is_file() else weights


def open_clip_name(arch: str, weights: str) -> str:
    """A stable cache id: ``open_clip-<arch>-<tag>``, the file's stem, or a loud RANDOM-INIT."""
    weights = local_weights(weights)
    if weights == RANDOM:
        return f"open_clip-{arch}-RANDOM-INIT"
    if is_random_weights(weights):
        return f"open_clip-{arch}-RANDOM-WEIGHTS-file-{weights_id(weights)}"
    if os.path.sep in weights or os.path.isfile(weights):
        return f"open_clip-{arch}-file-{weights_id(weights)}"
    return f"open_clip-{arch}-{weights}"


def load_open_clip(arch: str, weights: str, device: str) -> tuple[Any, Any, Any]:
    """(model in eval mode on ``device``, eval image transform, tokenizer). ``weights``: an
    open_clip pretrained tag (needs the hub or its cache), a checkpoint file (.bin/.pt/.safetensors;
    e.g. ``ViT-B-32-quickgelu`` for OpenAI's weights from a file) or ``random`` (tests only)."""
    import open_clip

    weights = local_weights(weights)
    if arch not in open_clip.list_models():
        raise ValueError(f"open_clip has no architecture {arch!r}; see open_clip.list_models()")
    kwargs: dict[str, Any] = {}
    pretrained = None if weights == RANDOM else weights
    if weights == RANDOM:
        warnings.warn(f"open_clip {arch}: RANDOMLY INITIALISED weights (tests/benchmarks only)",
                      stacklevel=3)
    elif os.path.isfile(weights):
        if is_random_weights(weights):
            warnings.warn(f"open_clip {arch}: {weights} holds RANDOM weights (a rehearsal checkpoint)",
                          stacklevel=3)
    else:
        tag_cfg = open_clip.get_pretrained_cfg(arch, weights)
        if not tag_cfg:
            raise FileNotFoundError(
                f"open_clip {arch}: {weights!r} is neither a checkpoint file nor a known tag "
                f"(tags: {open_clip.list_pretrained_tags_by_model(arch)})")
        # OpenAI's weights were trained with QuickGELU; open_clip 3 only warns about a mismatch.
        kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
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
