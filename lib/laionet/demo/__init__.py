"""The demo world: a small simulated web that follows the paper's causal story (DESIGN.md §5).

    from laionet.demo import build_world, ImageHost
    world = build_world("runs/demo/00_demo_world/world", size="demo", seed=0)
    world.laion_parts()          # LAION-400M-schema parquet parts
    with ImageHost(world.http) as host:
        host.rewrite_url(url)    # http://laion-demo.invalid/... -> http://127.0.0.1:<port>/...

The generator: classes (class sets), images (prototype + nuisance renderer), sampling (samples,
annotators), captions, text (names written into images), v2 (ImageNetV2's sampling), formats
(the real file formats), world (layout, build, cache). Around it: models (the image tower and
classifiers), layout (the pipeline's world keys), checks and plots (notebook 00), truth (hidden
truth for later stages), rehearsal (the full profile's real-asset rehearsal)."""

from laionet.demo.world import SIZES, WorldPaths, build_world
from laionet.sources.loopback import ImageHost

__all__ = ["SIZES", "ImageHost", "WorldPaths", "build_world"]
