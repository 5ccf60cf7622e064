"""The demo world's "CLIP" image tower: a small CNN architecture and its checkpoint format.

A checkpoint is ``<name>.safetensors`` (the state_dict) plus ``<name>.json`` (architecture,
input size, normalisation, and the text encoder whose embedding space the tower was trained
into). ``laionet.demo.models`` trains it; ``load_image_encoder("demo-tower:<file>")`` loads it.
"""

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from laionet.util.files import atomic_path, read_json, write_json

ARCH = "demo-cnn-v1"


def default_config(embed_dim: int = 384, input_size: int = 64,
                   text_encoder: str = "all-MiniLM-L6-v2") -> dict[str, Any]:
    return {"arch": ARCH,
            "widths": [16, 32, 64, 128],  # ~13M MACs per 64 px image: trains in the demo budget
            "embed_dim": embed_dim, "input_size": input_size, "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25], "interpolation": "bilinear", "text_encoder": text_encoder}


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """conv3x3 stride 2 + conv3x3, BatchNorm + ReLU: halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True))


class DemoTower(nn.Module):
    """Stages of :func:`_block`, global average pool, linear projection to ``embed_dim``
    (unnormalised; encoders L2-normalise it)."""

    def __init__(self, widths: list[int], embed_dim: int, **_: Any):
        super().__init__()
        chans = [3, *widths]
        self.features = nn.Sequential(*(_block(a, b) for a, b in zip(chans, chans[1:])))
        self.proj = nn.Linear(widths[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=(2, 3)))


def build_tower(config: dict[str, Any]) -> DemoTower:
    if config.get("arch") != ARCH:
        raise ValueError(f"demo tower config: arch {config.get('arch')!r}, this code builds {ARCH!r}")
    return DemoTower(**config)


def save_tower(model: DemoTower, config: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``path`` (.safetensors state_dict) and its JSON config, both atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the demo tower is saved as a .safetensors file")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp))
    write_json(config, path.with_suffix(".json"))
    return path


def load_tower(path: str | os.PathLike, device: str = "cpu") -> tuple[DemoTower, dict[str, Any]]:
    """Build the tower from its JSON config and load every weight (strict), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file = path.with_suffix(".json")
    if not path.is_file() or not cfg_file.is_file():
        raise FileNotFoundError(f"demo tower: need {path} and {cfg_file}; build the demo world "
                                "first (laionet.demo) or point the spec at its models/ folder")
    config = read_json(cfg_file)
    model = build_tower(config)
    try:  # strict: missing, unexpected and mis-shaped weights are all refused
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit {cfg_file}: {e}") from e
    return model.to(device).eval(), config
