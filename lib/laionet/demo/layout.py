"""Where each input of the pipeline sits inside a demo world. Stage declarations
(``laionet.pipeline.stages``) name world keys (every ``WorldPaths`` name of ``LAYOUT`` and a few
more); ``locate(world, key)`` turns one into a path, a glob or a model spec. Profiles say which
world (size, seed), never these paths."""

from collections.abc import Callable
from pathlib import Path

from laionet.demo.world import LAYOUT, WorldPaths

WORLD: dict[str, Callable[[WorldPaths], str | Path | None]] = {
    **{key: (lambda w, key=key: getattr(w, key)) for key in LAYOUT},
    "laion_parts": lambda w: w.laion / "part-*.parquet",
    "classes": lambda w: w.classes_txt,
    "classifiers": lambda w: f"demo:{w.models}",
    "image_tower": lambda w: f"demo-tower:{p}" if (p := w.model_files().get("image_tower")) else None,
}


def locate(world: WorldPaths, key: str) -> str | Path | None:
    """The world's file (or spec) for ``key``; KeyError names the known keys."""
    if key not in WORLD:
        raise KeyError(f"the demo world has no {key!r}; known: {sorted(WORLD)}")
    return WORLD[key](world)
