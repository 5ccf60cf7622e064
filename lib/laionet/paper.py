"""The paper's constants: every number and rule it states, in one place (paper_spec A-C).

Each method module takes these as defaults; a profile or a notebook parameter may change them,
and ``profiles/full.yaml`` leaves them as they are here.
"""

import numpy as np

# §2, A3: a caption's row key is the authors' global index, part * KEY_STRIDE + row
# (their INDEX_SHIFT_PER_PART; a LAION-400M part holds ~3M rows).
KEY_STRIDE = 100_000_000

# A1: the authors' class list drops the crane machine (indistinguishable from crane the bird)
# and lists Siberian husky under another wnid than the ILSVRC-2012 devkit's; their
# unique-in-WordNet lemma rule counts a hypernym as well known from this many occurrences.
CRANE_MACHINE = "n03126707"
HUSKY_TRUE, HUSKY_AUTHORS = "n02110185", "n02112837"
WELL_KNOWN_HYPERNYM_MIN_COUNT = 2
# A3: these two lemmas never occur with exactly that casing in LAION-400M captions, so their
# classes got no substring match although they contain no punctuation.
PAPER_NEVER_MATCHED_LEMMAS = ("Brabancon griffon", "EntleBucher")

# §2, A6 and A9: the caption-to-synset-text thresholds the authors used, per text encoder.
PAPER_THRESHOLDS = {"open_clip:ViT-B-32": 0.82, "clip-vit-base-patch32": 0.82,
                    "all-mpnet-base-v2": 0.58}
# The paper's image tower (stages 07, 09) and text encoder on real data.
CLIP_B32 = "open_clip:ViT-B-32:openai"
# A6: nsfw_rule -> accepted NSFW tags; null is never accepted except by "ignore".
NSFW_RULES = {"paper": ("UNLIKELY",),                     # exactly "UNLIKELY"
              "unlikely_or_unsure": ("UNLIKELY", "UNSURE"),
              "ignore": None}                             # LAIONet v1 (arXiv v1): NSFW kept
# §2, A3: LAIONet's classes / classes with any lemma match.
PAPER_CLASS_SHARE = 915 / 978

# §3.1, B7 (A21) and B9: the models of the recall panels and of the gap figure; B9's gallery
# skips images predicted as these (web site, book jacket).
PAPER_RECALL_MODELS = ("resnet-50", "convnext-base-224", "convnext-base-224-22k-1k",
                       "vit-base-patch16-224")
PAPER_GAP_MODEL = "vit-base-patch16-224"
GALLERY_SKIP_PREDICTED = ("n06359193", "n07248320")

# §4.2, A17: reference point, text grid and the four picked datasets; A20 (B19): LAIONet
# resampled per class to ImageNet val's 50 images, the delta test needing >= 7 on each side.
PAPER_T_REF, PAPER_I_REF = 0.82, 0.20
PAPER_TEXT_GRID = tuple(np.round(np.linspace(0.72, 0.82, 11), 4))
PAPER_PICKS = {"D": 0.72, "C": 0.76, "B": 0.79, "A": 0.81}
B19_N_PER_CLASS = 50
B19_MIN_IMAGES = 7

# §4.3, C.6: the authors' CDF guide line, 95.7 % of captions have p <= 0.05.
PAPER_P_AT = 0.05
PAPER_SHARE_AT = 0.957

# §4.4, B18: the thresholds of the retrieval sweep.
PAPER_SWEEP = tuple(float(t) for t in np.round(np.linspace(0.5, 0.75, 20), 4))
