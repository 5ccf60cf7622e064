"""Draw image-caption samples from the demo world's distributions (parameters only, no pixels).

A *sample* is one row: what the image shows (a class ``label`` or a non-class ``distractor``
prototype), its nuisance vector and typicality, and what its caption mentions (``kind``,
``mention``/``mention2`` class labels, the ``lemma`` strings). Pixels and caption strings are made
from these rows by ``images.render`` and ``captions.compose``.

Caption kinds:
  unique        mentions one lemma of the image's class
  nested        same, but the lemma contains another class's lemma ("sea lion" contains "lion")
  two_classes   mentions lemmas of two classes (the image shows the first)
  polysemous    a class lemma in its other sense ("painter" the artist); the image is no class
  unmentioned   the image shows a class, the caption names none of its lemmas
  no_class      neither the image nor the caption is about a world class
"""

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from laionet.demo import images
from laionet.demo.classes import POLYSEMES

KINDS = ("unique", "nested", "two_classes", "polysemous", "unmentioned", "no_class")
# LAION's natural mix (before "unique" / "nested" are told apart: both are "lemma" here)
NATURAL_KINDS = {"lemma": 0.32, "two_classes": 0.04, "polysemous": 0.05, "unmentioned": 0.12,
                 "no_class": 0.47}
# what a text search for one class returns (ImageNet / ImageNetV2 candidates)
SEARCH_KINDS = {"lemma": 0.86, "two_classes": 0.06, "polysemous": 0.08}
N_DISTRACTORS = 12


@dataclass(frozen=True)
class World:
    """Everything the samplers need: classes, prototypes, lemma tables, class frequencies."""
    classes: pd.DataFrame          # world_classes(): wnid, cid, lemmas, gloss, label
    prototypes: pd.DataFrame       # one row per class (label order)
    distractors: pd.DataFrame      # N_DISTRACTORS non-class prototypes
    class_freq: np.ndarray         # long-tailed natural class frequencies (sum 1)
    polysemes: pd.DataFrame        # label, lemma, phrase (other senses present in this world)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def make_world(classes: pd.DataFrame, rng: np.random.Generator, zipf_s: float = 1.0) -> World:
    """Prototypes, distractors and Zipf class frequencies (a seeded permutation of the ranks)."""
    protos = images.make_prototypes(len(classes), rng)
    distr = images.make_prototypes(N_DISTRACTORS, rng, family_offset=3)
    freq = (rng.permutation(len(classes)) + 1).astype(np.float64) ** -zipf_s
    label = dict(zip(classes["wnid"], classes["label"]))
    poly = pd.DataFrame([(label[w], lem, ph) for w, lem, phrases in POLYSEMES if w in label
                         for ph in phrases], columns=["label", "lemma", "phrase"])
    return World(classes, protos, distr, freq / freq.sum(), poly)


def nested_lemmas(classes: pd.DataFrame) -> set[str]:
    """Lemmas that contain, on word boundaries, a lemma of another class of this world."""
    owner = [(lem, lab) for lems, lab in zip(classes["lemmas"], classes["label"]) for lem in lems]
    return {lem for lem, lab in owner for other, olab in owner
            if olab != lab and re.search(rf"(?<!\w){re.escape(other)}(?!\w)", lem)}


def pick_lemma(world: World, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One lemma of each row's class, uniformly among the class's lemmas (vectorised)."""
    lemmas = world.classes["lemmas"].to_list()
    n_lem = np.array([len(x) for x in lemmas])
    off = np.concatenate([[0], np.cumsum(n_lem)[:-1]])
    pick = off[labels] + (rng.random(len(labels)) * n_lem[labels]).astype(np.int64)
    return np.array([lem for x in lemmas for lem in x], dtype=object)[pick]


def draw(world: World, n: int, rng: np.random.Generator, *, query: np.ndarray | None = None,
         spread_sigma: float = 0.45) -> pd.DataFrame:
    """``n`` samples from the natural distribution, or, with ``query`` (a class label per row),
    from what a text search for that class returns (its lemma in the caption, images natural).
    Nuisance spread is log-normal (``spread_sigma``): the web shows classes in every condition."""
    kinds_p = SEARCH_KINDS if query is not None else NATURAL_KINDS
    names, p = list(kinds_p), np.array(list(kinds_p.values()))
    if world.polysemes.empty:
        p[names.index("polysemous")] = 0
    kind = np.array(names, dtype=object)[rng.choice(len(names), n, p=p / p.sum())]
    if query is None:
        label = rng.choice(world.n_classes, n, p=world.class_freq)
    else:
        label = np.asarray(query, dtype=np.int64)
        # a search for a class without another sense returns a plain lemma hit instead
        has_poly = np.isin(label, world.polysemes["label"].to_numpy())
        kind = np.where((kind == "polysemous") & ~has_poly, "lemma", kind)
    mention, mention2 = label.copy(), np.full(n, -1)
    lemma = pick_lemma(world, label, rng)
    lemma2, phrase = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    two = kind == "two_classes"
    other = (label + 1 + rng.integers(0, world.n_classes - 1, n)) % world.n_classes
    mention2[two] = other[two]
    lemma2[two] = pick_lemma(world, other[two], rng)
    poly = kind == "polysemous"
    if poly.any():
        # the polysemous entry: any one in natural text, one of the queried class in a search
        entries = world.polysemes
        if query is None:
            e = rng.integers(0, len(entries), n)
        else:
            lab = entries["label"].to_numpy()
            e = np.zeros(n, dtype=np.int64)
            for c in np.unique(label[poly]):  # few classes: loop over classes, not rows
                rows = np.flatnonzero(poly & (label == c))
                e[rows] = rng.choice(np.flatnonzero(lab == c), len(rows))
        for col, out in (("label", mention), ("lemma", lemma), ("phrase", phrase)):
            out[poly] = entries[col].to_numpy()[e[poly]]
    no_mention = (kind == "unmentioned") | (kind == "no_class")
    mention[no_mention] = -1
    lemma[no_mention] = ""
    nested = np.isin(lemma, list(nested_lemmas(world.classes))) & (kind == "lemma")
    kind = np.where(kind == "lemma", np.where(nested, "nested", "unique"), kind)
    shows_class = ~np.isin(kind, ("polysemous", "no_class"))
    distractor = np.where(shows_class, -1, rng.integers(0, N_DISTRACTORS, n))
    label = np.where(shows_class, label, -1)
    spread = np.exp(rng.normal(0.0, spread_sigma, n)).astype(np.float32)
    z = (rng.standard_normal((n, images.N_NUISANCE)) * spread[:, None]).astype(np.float32)
    return pd.DataFrame({
        "label": label.astype(np.int16), "distractor": distractor.astype(np.int16),
        "kind": kind.astype(str), "mention": mention.astype(np.int16),
        "mention2": mention2.astype(np.int16), "lemma": lemma.astype(str),
        "lemma2": lemma2.astype(str), "phrase": phrase.astype(str),
        "typicality": images.typicality(z),
        **{f"z_{k}": z[:, j] for j, k in enumerate(images.NUISANCE)}})


def nuisance(samples: pd.DataFrame) -> np.ndarray:
    """The [n, N_NUISANCE] nuisance matrix of a sample table."""
    return samples[[f"z_{k}" for k in images.NUISANCE]].to_numpy(np.float32)


def prototypes_of(world: World, samples: pd.DataFrame) -> pd.DataFrame:
    """One prototype row per sample: its class's, or (label -1) its distractor's."""
    table = pd.concat([world.prototypes, world.distractors], ignore_index=True)
    lab = samples["label"].to_numpy()
    row = np.where(lab >= 0, lab, world.n_classes + samples["distractor"].to_numpy())
    return table.iloc[row].reset_index(drop=True)


def render(world: World, samples: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The pixels of a sample table, [n, 64, 64, 3] uint8."""
    return images.render(prototypes_of(world, samples), nuisance(samples), rng)


def accept_probability(samples: pd.DataFrame, target: np.ndarray, *, slope: float = 8.0,
                       midpoint: float = 0.62, p_wrong: float = 0.03) -> np.ndarray:
    """A simulated annotator's chance to say "this image shows ``target``": rising with typicality
    (a logistic curve) when the image shows the target class, ``p_wrong`` otherwise. This is where
    selection depends on the image, as for ImageNet."""
    p = 1.0 / (1.0 + np.exp(-slope * (samples["typicality"].to_numpy(np.float64) - midpoint)))
    return np.where(samples["label"].to_numpy() == target, p, p_wrong)
