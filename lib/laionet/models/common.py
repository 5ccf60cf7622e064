"""Small helpers shared by the text and image encoders: devices, precision, normalisation."""

import contextlib
import os
from typing import Iterator, Sequence

import numpy as np

#: What the authors feed the encoder for a null caption (paper_spec A5).
NULL_TEXT = "None"

_PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_precision(precision: str, device: str) -> str:
    """Validate ``precision``: half precision is a GPU speed-up only (autocast on CUDA)."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {sorted(_PRECISIONS)}")
    if precision != "fp32" and not str(device).startswith("cuda"):
        raise ValueError(f"precision={precision!r} needs a CUDA device (got device={device!r}); "
                         "use precision='fp32' on CPU")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: str) -> Iterator[None]:
    import torch

    dtype = _PRECISIONS[precision]
    with (torch.autocast("cuda", dtype=getattr(torch, dtype)) if dtype
          else contextlib.nullcontext()):
        yield


def clean_texts(texts: Sequence[str | None]) -> list[str]:
    """Captions as the encoder sees them: null -> ``"None"`` (paper_spec A5), others unchanged."""
    if hasattr(texts, "to_pylist"):  # pyarrow Array / ChunkedArray
        texts = texts.to_pylist()
    return [NULL_TEXT if t is None else t for t in texts]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (sklearn.preprocessing.normalize semantics)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_rowwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b`` (e.g. a caption vs its synset text);
    both sides are L2-normalised first, as the authors did, so float16 caches work too."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"cosine_rowwise: expected two [n, d] arrays of the same shape, "
                         f"got {a.shape} and {b.shape}")
    return np.einsum("ij,ij->i", l2_normalize(a), l2_normalize(b))


def parse_spec(spec: str, kinds: Sequence[str], example: str) -> tuple[str, str]:
    """Split ``kind:rest`` and check the kind; ``rest`` may itself hold ':' (paths)."""
    kind, _, rest = spec.partition(":")
    if kind not in kinds:
        raise ValueError(f"encoder spec {spec!r}: unknown kind {kind!r}; expected one of "
                         f"{list(kinds)} (e.g. {example!r})")
    return kind, rest


def split_arch(spec: str, rest: str, what: str) -> tuple[str, str]:
    arch, sep, weights = rest.partition(":")
    if not arch or not sep or not weights:
        raise ValueError(f"encoder spec {spec!r}: expected '{what}'")
    return arch, weights


def timm_from_hub(name: str, what: str, fix: str, **kwargs):
    """``timm.create_model(name, pretrained=True, **kwargs)``; any hub failure (their types vary)
    becomes one RuntimeError naming ``what`` failed, whether the hub is offline, and ``fix``."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # hub errors come in many types; all need the same advice
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise RuntimeError(
            f"{what}: could not load timm's hub weights {name!r}"
            + (" (HF_HUB_OFFLINE=1 and they are not in the local HF cache)" if offline else "")
            + f": {type(exc).__name__}: {exc}. Fix: download them once with network "
            f"(HF_HUB_OFFLINE=0), or {fix}.") from exc


def weights_id(path: str) -> str:
    """A short id of a weights file for cache names: its stem, or its folder's name when the
    stem is generic (HF snapshots are all called model.safetensors)."""
    p = os.path.abspath(os.path.expanduser(path))
    stem = os.path.basename(p).split(".")[0]
    if stem in ("model", "pytorch_model", "open_clip_pytorch_model", "open_clip_model",
                "checkpoint", "weights"):
        return f"{os.path.basename(os.path.dirname(p))}-{stem}"
    return stem
