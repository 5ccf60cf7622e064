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

# C.1-C.6: the numbers behind the paper's claims, as the claims table (laionet.method.claims)
# compares a run with them. Ranges are (low, high); "digitized" numbers were read off the
# paper's plots (+-0.01 to 0.02).
# §3.1: ImageNet - LAIONet accuracy, classes equally weighted, 1k and pt22k-ft1k models.
PAPER_DROP = {1: (0.10, 0.14), 5: (0.08, 0.13)}
# §3.1 (B6): on LAIONet, LAION-weighted minus equally weighted top-1 (0.43-0.69 vs 0.58-0.78).
PAPER_WEIGHTED_MINUS_EQUAL = (-0.15, -0.09)
# §3.2 (C.3, CLIP, 872 tested classes): LAIONet significantly less / more similar within a class.
PAPER_INTRA_LOWER, PAPER_INTRA_HIGHER = 0.576, 0.279
# §4.1 (C.4, digitized): share of classes where LAIONet is significantly less similar than
# ImageNetV2, by release (MTurk selection frequency b 0.73 < a 0.85 < c 0.93).
PAPER_V2_LAIONET_LOWER = {"b": 0.32, "a": 0.46, "c": 0.59}
# §4.2 (C.5, CLIP, digitized): average intra-class similarity of datasets D-A and ImageNet val.
PAPER_AVG_SIMILARITY = {"D": 0.736, "C": 0.728, "B": 0.716, "A": 0.696, "ImageNet": 0.703}
# §4.4 (C.6): LAION retrieved by ImageNet captions, significantly less / more similar.
PAPER_RETRIEVED_LOWER, PAPER_RETRIEVED_HIGHER = 0.773, 0.152
# Appendix (C.3, MPNet LAIONet): LAIONet vs ImageNet-Captions (train), significantly lower.
PAPER_CAPTIONS_LOWER = 0.706
# A20 (C.6): image-to-[name: def] similarity, LAIONet significantly lower / higher.
PAPER_IMAGE_TO_SYNSET_LOWER, PAPER_IMAGE_TO_SYNSET_HIGHER = 0.138, 0.435
# C.1: ImageNet val top-1, classes equally weighted, projected onto the 977 LAIONet keys; exact
# (the authors' printed outputs, reproduced from their released table).
PAPER_IMAGENET_TOP1 = {
    "resnet-18": 0.6973, "resnet-34": 0.7517, "resnet-50": 0.8014, "resnet-101": 0.8192,
    "resnet-152": 0.8256, "convnext-tiny-224": 0.8205, "convnext-small-224": 0.8317,
    "convnext-base-224": 0.8384, "convnext-large-224": 0.8433, "convnext-base-384": 0.8509,
    "convnext-large-384": 0.8553, "vit-base-patch16-224": 0.8042, "vit-base-patch16-384": 0.8397,
    "vit-base-patch32-384": 0.8129, "vit-large-patch16-224": 0.8203,
    "vit-large-patch16-384": 0.8499, "vit-large-patch32-384": 0.8108,
    "convnext-base-224-22k-1k": 0.8588, "convnext-large-224-22k-1k": 0.8668,
    "convnext-base-384-22k-1k": 0.8688, "convnext-large-384-22k-1k": 0.8752,
    "beit-base-patch16-224": 0.8460, "beit-base-patch16-384": 0.8655,
    "beit-large-patch16-224": 0.8729, "beit-large-patch16-384": 0.8841,
    "convnext-base-224-22k": 0.6510, "convnext-large-224-22k": 0.6550,
    "beit-base-patch16-224-pt22k-ft22k": 0.6434, "beit-large-patch16-224-pt22k-ft22k": 0.6529}
