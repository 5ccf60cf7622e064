"""Where each input of the pipeline sits inside a demo world: the one source of that layout.

Stage declarations (``laionet.pipeline.stages``) name world keys; ``locate(world, key)`` turns one into
a path, a glob or a model spec. Profiles say which world (size, seed), never these paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from laionet.demo.world import WorldPaths
from laionet.demo.checks import model_paths


def _tower(w: WorldPaths) -> str | None:
    ckpt = model_paths(w).get("image_tower") if w.world_json.is_file() else None
    return f"demo-tower:{ckpt}" if ckpt else None


WORLD: dict[str, Callable[[WorldPaths], str | Path | None]] = {
    "laion_parts": lambda w: w.laion / "part-*.parquet",
    "classes": lambda w: w.classes_txt,
    "http": lambda w: w.http,
    "truth": lambda w: w.truth,
    "imagenet_train": lambda w: w.imagenet_train,
    "imagenet_val": lambda w: w.imagenet_val,
    "imagenet_devkit": lambda w: w.devkit,
    "imagenetv2": lambda w: w.imagenetv2,
    "imagenetv2_class_info": lambda w: w.class_info,
    "selection_frequencies": lambda w: w.selection_frequencies,
    "imagenet_captions": lambda w: w.imagenet_captions,
    "classifiers": lambda w: f"demo:{w.models}",
    "image_tower": _tower,
}


def locate(world: WorldPaths, key: str) -> str | Path | None:
    """The world's file (or spec) for ``key``; KeyError names the known keys."""
    try:
        fn = WORLD[key]
    except KeyError:
        raise KeyError(f"the demo world has no {key!r}; known: {sorted(WORLD)}") from None
    return fn(world)
