"""The demo world's class sets: real ImageNet-1k synsets chosen for the paper's hard cases.

* several lemmas per class (cougar: cougar, puma, catamount, mountain lion, painter, ...);
* a polysemous lemma used in its other sense (cougar's "painter", "cricket" the game, ...);
* nested lemmas across classes ("lion" in "sea lion" and "mountain lion", "tiger" in "tiger cat");
* lemmas with punctuation, which the paper's matcher can never find ("jack-o'-lantern",
  "three-toed sloth").

Lemmas and glosses come from the real class table (``laionet.sources.classes.class_table``,
the same WordNet 3.0 strings ImageNet uses), never typed in here, so the demo world's class texts
are exactly the real ones.
"""

import pandas as pd

from laionet.sources.classes import class_table, imagenet1k_wnids

# Order matters only for readability; every table is sorted by wnid before it is written.
DEMO_WNIDS: tuple[str, ...] = (
    "n02125311",  # cougar, puma, catamount, mountain lion, painter, panther, Felis concolor
    "n02129165",  # lion, king of beasts, Panthera leo        (nested in "sea lion", "mountain lion")
    "n02077923",  # sea lion
    "n02129604",  # tiger, Panthera tigris                   (nested in "tiger cat")
    "n02123159",  # tiger cat
    "n03590841",  # jack-o'-lantern                           (punctuation: unmatchable in paper mode)
    "n02457408",  # three-toed sloth, ai, Bradypus tridactylus (punctuation; the 2-letter "ai")
    "n02229544",  # cricket                                   (polysemous: the game)
    "n03793489",  # mouse, computer mouse                     (polysemous: the animal)
    "n07747607",  # orange                                    (polysemous: the colour)
    # tench, Chihuahua, African elephant, mountain bike, soccer ball, banana, church, sports car,
    # beach wagon (station wagon, estate car, ...), teapot, coffee mug, airliner, volcano, parachute
    "n01440764", "n02085620", "n02504458", "n03792782", "n04254680", "n07753592", "n03028079",
    "n04285008", "n02814533", "n04398044", "n03063599", "n02690373", "n09472597", "n03888257",
)

# tiny keeps cougar, a nested pair (lion / sea lion, and cougar's "mountain lion"), a punctuation
# class and two common ones.
TINY_WNIDS: tuple[str, ...] = (
    "n02125311", "n02129165", "n02077923", "n03590841", "n07747607", "n04398044",
)

CLASS_SETS = {"demo": DEMO_WNIDS, "tiny": TINY_WNIDS}

# Other senses of polysemous lemmas: (wnid, lemma as written, caption phrases using the other
# sense). An image under such a caption is not of the class.
_POLYSEME_TABLE = """
n02125311 painter: portrait by a famous painter; painter and decorator services; the painter in her studio
n02229544 cricket: cricket match highlights; cricket bat and pads; village cricket team
n03793489 mouse: field mouse in the hedge; cartoon mouse character; a mouse eating cheese
n07747607 orange: orange summer dress; orange sunset over the city; bright orange sofa
n02129604 tiger: tiger balm ointment; tiger economy report; tiger print leggings
n02129165 lion: the lion king poster; lion dance festival; British lion pub sign
"""
POLYSEMES: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (head.split(" ", 1)[0], head.split(" ", 1)[1], tuple(p.strip() for p in phrases.split(";")))
    for head, phrases in (line.split(":", 1) for line in _POLYSEME_TABLE.strip().splitlines()))


def world_classes(size: str) -> pd.DataFrame:
    """The world's classes sorted by wnid: wnid, cid, lemmas, gloss, head, name_def, label.

    ``cid`` is the ImageNet-1k class index (the ImageNetV2 folder name); ``label`` (0..K-1) is the
    position in this table, the world's class index everywhere (ImageNet-mini labels, devkit
    ILSVRC2012_ID - 1).
    """
    t = class_table(sorted(CLASS_SETS[size]))
    order = {w: i for i, w in enumerate(imagenet1k_wnids())}
    return pd.DataFrame({"wnid": t["wnid"], "cid": [order[w] for w in t["wnid"]],
                         "lemmas": [list(x) for x in t["lemmas"]], "gloss": t["definition"],
                         "head": t["head"], "name_def": t["name_def"], "label": range(len(t))})
