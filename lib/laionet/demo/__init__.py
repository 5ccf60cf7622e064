"""The demo world: a small simulated web that follows the paper's causal story (DESIGN.md §5).

    from laionet.demo import build_world, ImageHost
    world = build_world("runs/demo/00_demo_world/world", size="demo", seed=0)
    world.laion_parts()          # LAION-400M-schema parquet parts
    with ImageHost(world.http) as host:
        host.rewrite_url(url)    # http://laion-demo.invalid/... -> http://127.0.0.1:<port>/...

Modules: classes (the class sets), images (prototype + nuisance renderer), sampling (draws of
samples, annotators), captions (caption text), v2 (ImageNetV2's sampling strategies), formats
(writers of the real formats), host (loopback HTTP), world (layout, build, cache), models (the
demo's image tower and classifiers; another module's job).
"""

from laionet.demo.world import SIZES, WorldPaths, build_world
from laionet.sources.loopback import ImageHost

__all__ = ["SIZES", "ImageHost", "WorldPaths", "build_world"]
