"""Caption strings for sample tables: the class through an information bottleneck, plus web noise.

A caption is assembled from parts, each a vectorised column (object arrays, no per-row Python):

  pre      a weakly image-related word: the image's main colour (right 85 % of the time) or
           "close-up" for large, zoomed-in objects
  subject  the lemma in a template ("photo of a {lemma}", "{lemma}s", "{Lemma} for sale", ...;
           case varied as on the web), two lemmas, a polysemous phrase, a gloss hint or generic
           web text, according to the sample's kind
  where    the image's habitat ("on grass", "in the snow"), sometimes
  context  one or two content words of the class's WordNet gloss, sometimes
  noise    web noise ("buy now", sizes, SEO strings, stock-photo ids), sometimes

LAION's TEXT joins the parts; ImageNet-Captions' title / tags / description are made from the
same parts (title = pre + subject, tags = where + context words, description = noise).
"""

import re

import numpy as np
import pandas as pd

from laionet.demo import images
from laionet.demo.sampling import World, nuisance, prototypes_of

SUBJECT_TEMPLATES = (("", ""), ("photo of a ", ""), ("", "s"), ("the ", " in my garden"),
                     ("", " for sale"), ("cute ", " picture"), ("", " - stock image"),
                     ("my ", ", taken yesterday"), ("a ", " close to home"), ("", "!"))
PAIR_TEMPLATES = ((" and ", ""), (" vs ", ""), (" with a ", " nearby"), (", ", " & friends"))
GENERIC = ("summer holiday beach house", "wedding dress with lace", "vintage poster design",
           "modern kitchen interior", "city skyline at dusk", "handmade ceramic bowl",
           "mens leather boots", "abstract watercolor pattern", "family picnic in the park",
           "office desk setup", "garden flowers in bloom", "birthday party decorations",
           "mountain road trip", "blue denim jacket", "wooden dining table",
           "retro video game screenshot", "yoga class outdoors", "christmas tree lights")
NOISE = ("buy now", "free shipping", "HD wallpaper", "| Stock Photo", "#photography #nature",
         "best price online", "1024x768", "800 x 600 px", "click to enlarge", "IMG_{n}",
         "Download free", "(c) {n} all rights reserved", "sku {n}", "pinterest", "jpg")
STOPWORDS = frozenset(["a", "an", "the", "of", "or", "and", "in", "on", "to", "by", "for", "with",
                       "from", "that", "which", "used", "having", "any", "its", "their", "has",
                       "have", "being", "into", "is", "are", "as", "at", "most"])


def _context_words(world: World) -> list[np.ndarray]:
    """Per class: gloss words (>= 4 letters) that are not stopwords and no world lemma's word,
    so a context hint never mentions a class by accident (the truth stays exact)."""
    lemma_words = {w.lower() for lems in world.classes["lemmas"] for lem in lems
                   for w in re.findall(r"[A-Za-z]+", lem)}
    out = []
    for gloss in world.classes["gloss"]:
        words = [w for w in re.findall(r"[A-Za-z]+", gloss)
                 if len(w) >= 4 and w.lower() not in STOPWORDS | lemma_words]
        out.append(np.array(words or ["thing"], dtype=object))
    return out


def _choose(options, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


def _vary_case(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Web casing: 60 % as written, 25 % lower case, 15 % Title Case."""
    u = rng.random(len(s))
    ser = pd.Series(s, dtype=object)
    out = ser.where(u < 0.60, ser.str.lower())
    return out.where(u < 0.85, ser.str.title()).to_numpy(dtype=object)


def _fill(tpl, lemma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``lemma`` inside a random (before, after) template of ``tpl``."""
    t = rng.integers(0, len(tpl), len(lemma))
    pre, suf = (np.array(x, dtype=object)[t] for x in zip(*tpl))
    return pre + lemma + suf


def compose(world: World, samples: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Caption parts (pre, subject, where, context, noise) and the joined ``text``, one row each."""
    n, kind, label = len(samples), samples["kind"].to_numpy(), samples["label"].to_numpy()
    lemma = _vary_case(samples["lemma"].to_numpy(dtype=object), rng)
    lemma2 = _vary_case(samples["lemma2"].to_numpy(dtype=object), rng)
    empty = np.full(n, "", dtype=object)
    subject = empty.copy()
    one = np.isin(kind, ("unique", "nested"))
    subject[one] = _fill(SUBJECT_TEMPLATES, lemma[one], rng)
    two = kind == "two_classes"
    subject[two] = lemma[two] + _fill(PAIR_TEMPLATES, lemma2[two], rng)
    poly = kind == "polysemous"
    subject[poly] = samples["phrase"].to_numpy(dtype=object)[poly]
    generic = kind == "no_class"
    subject[generic] = _choose(GENERIC, int(generic.sum()), rng)

    # context: gloss words of the class (always for "unmentioned": it is all the caption has)
    ctx_words, ctx = _context_words(world), empty.copy()
    want_ctx = (label >= 0) & ((kind == "unmentioned") | (rng.random(n) < 0.25))
    for c in np.unique(label[want_ctx]):  # loop over classes (few), vectorised within
        rows = np.flatnonzero(want_ctx & (label == c))
        w = ctx_words[c]
        ia = rng.integers(0, len(w), len(rows))
        a = w[ia]
        b = w[(ia + 1 + rng.integers(0, max(len(w) - 1, 1), len(rows))) % len(w)]  # != a
        ctx[rows] = np.where(rng.random(len(rows)) < 0.5, a, a + " " + b)

    # what the caption saw of the image: colour (sometimes wrong), zoom, habitat
    protos = prototypes_of(world, samples)
    true_colour = images.dominant_colour(protos, nuisance(samples))
    wrong = rng.random(n) < 0.15
    colour = np.where(wrong, rng.integers(0, len(images.COLOUR_NAMES), n), true_colour)
    names = np.array(images.COLOUR_NAMES, dtype=object)
    said = rng.random(n) < 0.3
    pre = np.where(said, names[colour], empty)
    zoomed = samples["z_scale"].to_numpy() * 0.25 > np.log(1.15)
    pre = np.where(zoomed & (rng.random(n) < 0.5), "close-up " + pre, pre)
    habitat = np.array([h for h, _ in images.HABITATS], dtype=object)[protos["habitat"].to_numpy()]
    where = np.where(rng.random(n) < 0.25, habitat, empty)

    noise = pd.Series(np.where(rng.random(n) < 0.35, _choose(NOISE, n, rng), empty), dtype=object)
    split = noise.str.split("{n}", n=1, expand=True).reindex(columns=[0, 1])
    nums = pd.Series(rng.integers(1000, 99999, n).astype(str), dtype=object)
    noise = split[0].where(split[1].isna(), split[0] + nums + split[1])

    parts = pd.DataFrame({"pre": pre, "subject": subject, "where": where, "context": ctx,
                          "noise": noise, "colour_word": np.where(said, names[colour], ""),
                          "colour_ok": said & (colour == true_colour)})
    text = (parts["pre"] + " " + parts["subject"] + " " + parts["where"] + " " +
            parts["context"] + " " + parts["noise"])
    parts["text"] = text.str.replace(r"\s+", " ", regex=True).str.strip()
    return parts


def imagenet_captions_fields(parts: pd.DataFrame) -> pd.DataFrame:
    """title / tags / description in ImageNet-Captions form from caption parts;
    ``' '.join([title] + tags + [description])`` is the caption the paper reads (A18)."""
    title = (parts["pre"] + " " + parts["subject"]).str.replace(r"\s+", " ", regex=True).str.strip()
    tag_text = (parts["where"] + " " + parts["context"]).str.strip()
    tags = tag_text.map(lambda s: s.split() if s else [])
    return pd.DataFrame({"title": title, "tags": tags, "description": parts["noise"]})
