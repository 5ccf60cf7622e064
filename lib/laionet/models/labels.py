"""Label maps by wnid: which WordNet synset each classifier output stands for.

The authors matched HF ``id2label`` texts to ImageNet lemma strings, which left ~132 classes
unpredictable for 22k-output models and mapped "Siberian husky" to a wrong wnid (spec A11,
E.4). Here every output gets its wnid from the wnid list of its label space, in output order:
ImageNet-1k (``laionet.sources.classes.imagenet1k_wnids``), timm's bundled 21k / 22k / 12k
lists (chosen by the output count, as timm does), or a text file with one wnid per line.
"""

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from laionet.util.paths import resolve
from laionet.sources import classes

# label-space name -> timm subset name (timm.data.ImageNetInfo)
LABEL_SPACES = {"imagenet1k": "imagenet-1k", "imagenet12k": "imagenet-12k",
                "imagenet21k": "imagenet-21k-goog", "imagenet21k-goog": "imagenet-21k-goog",
                "imagenet22k": "imagenet-22k", "imagenet22k-ms": "imagenet-22k-ms"}


def read_wnid_file(path: str | os.PathLike) -> list[str]:
    """One wnid per line (blank lines ignored); every line must look like ``n01234567``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found (one wnid per line, output order)")
    wnids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    bad = [(i + 1, w) for i, w in enumerate(wnids) if not (w[:1] == "n" and w[1:].isdigit())]
    if bad:
        raise ValueError(f"{path}: line {bad[0][0]} is {bad[0][1]!r}, not a wnid like n01440764")
    return wnids


def label_space_wnids(space: str | os.PathLike) -> list[str]:
    """The output wnids of a named label space (see LABEL_SPACES) or of a class-list file in
    either format ``class_table`` reads (relative paths from the project root). Used for
    classifier output lists and for stage 04's ``universe``."""
    space = str(space)
    if space == "imagenet1k":  # the one ImageNet-1k list (laionet.sources.classes)
        return list(classes.imagenet1k_wnids())
    if space in LABEL_SPACES:
        from timm.data import ImageNetInfo

        return list(ImageNetInfo(LABEL_SPACES[space]).label_names())
    path = resolve(space)
    if path.is_file():
        return [w for w, _ in classes.parse_class_file(path)]
    raise ValueError(f"label space / class list {space!r}: not one of {sorted(LABEL_SPACES)} and "
                     f"no such file ({path}); give a name or a text file with one wnid per line")


def infer_label_space(num_classes: int) -> str:
    """The ImageNet label space timm associates with an output count (1000 -> imagenet1k...)."""
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    for name, sub in LABEL_SPACES.items():
        if sub == subset:
            return name
    raise ValueError(f"{num_classes} outputs match no ImageNet label space; give the classifier "
                     "an output_wnids file (one wnid per output, in order)")


def mapped_outputs(output_wnids: Sequence[str | None], universe: Iterable[str] | None) -> np.ndarray:
    """Indices of the outputs the prediction may choose from (the paper's "matched" outputs: it
    restricts logits to the outputs mapped to a class of ``universe``, its ImageNet class list;
    None: every output with a wnid)."""
    allowed = None if universe is None else set(universe)
    return np.asarray([i for i, w in enumerate(output_wnids)
                       if w and (allowed is None or w in allowed)], dtype=np.int64)


def label_map_coverage(output_wnids: Iterable[str | None], class_wnids: Iterable[str]) -> dict:
    """How many classes of an evaluation set a classifier can predict at all: n_classes,
    n_covered, coverage (fraction) and ``missing`` (sorted wnids with no output: recall 0)."""
    outs = {w for w in output_wnids if w}
    wanted = sorted(set(class_wnids))
    missing = [w for w in wanted if w not in outs]
    n = len(wanted)
    return {"n_classes": n, "n_covered": n - len(missing),
            "coverage": (n - len(missing)) / n if n else float("nan"), "missing": missing}
