"""Every figure and table the notebooks save, keyed by file stem: the paper figure it reproduces
(B1-B20, numbered as in ``paper_spec.md`` section B and ``docs/FIGURES.md``) or ``extension``,
and a one-line caption saying what it shows.

The run's report page (``laionet.pipeline.report``) reads this table; a test checks that every figure and
table the tiny run writes has an entry, so a new figure without one fails there. A stem with a
``{placeholder}`` stands for a family (one file per encoder, say). To add a figure: save it with
``S.figure(fig, "NN_name")`` and add ``"NN_name": E(paper, caption)`` here (and, for a paper
figure, a row of docs/FIGURES.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXTENSION = "extension"
PAPER = tuple(f"B{i}" for i in range(1, 21))


@dataclass(frozen=True)
class E:
    """One catalogue entry: the paper figure (``B1``-``B20`` or ``extension``), a caption, and
    other paper figures it also holds the numbers of."""

    paper: str
    caption: str
    also: tuple[str, ...] = ()


X = EXTENSION
CATALOG: dict[str, E] = {
    # 00: the demo world checks its own causal story (not a paper figure)
    "00_demo_samples_by_typicality": E(X, "Demo world: images of a few classes, from least to most typical."),
    "00_demo_caption_samples": E(X, "Demo world: sample captions of each kind (lemma, nested, polysemous, two classes, none)."),
    "00_demo_class_frequencies": E(X, "Demo world: long-tailed class frequencies and the mix of caption kinds."),
    "00_demo_typicality": E(X, "Demo world: typicality of text-selected (LAION) vs image-selected (ImageNet) images."),
    "00_demo_intra_class_similarity": E(X, "Demo world: image-selected classes are more similar within themselves than text-selected ones."),
    "00_demo_classifier_accuracy": E(X, "Demo world: classifiers trained on image-selected data lose accuracy on natural images."),
    # 01: substring matching (paper §2, criterion 1)
    "01_class_coverage": E(X, "How many classes have at least one caption matching one of their lemmas."),
    "01_classes_without_unique_lemma": E(X, "Classes no unique lemma can reach (every lemma shared with another class), and why: they can never be matched."),
    "01_unreachable_classes": E(X, "Classes no caption can match (no usable lemma) or none did, and why."),
    "01_matches_per_class": E(X, "Matching captions per class, largest first."),
    "01_lemma_counts": E(X, "Captions matched per lemma; lemmas that can never match."),
    "01_multi_label": E(X, "Share of matching captions that name lemmas of several classes (dropped later)."),
    # 02: caption filtering (paper §2, App. A/B)
    "02_summary": E(X, "Stage 02 in numbers: candidates, threshold, NSFW rule, LAIONet size and classes."),
    "02_B1_similarity_threshold": E("B1", "Text-to-synset similarity before filtering, and classes kept and dataset size vs threshold."),
    "02_threshold_curves": E("B1", "Classes kept and LAIONet size at each threshold (the numbers behind B1)."),
    "02_threshold_calibration_truth": E(X, "Demo world: which caption kinds each MiniLM threshold keeps (the calibration of the demo threshold)."),
    "02_B2_lemma_histograms": E("B2", "Per-lemma caption-to-synset similarity of one class (cougar: puma, painter, ...), threshold marked."),
    "02_B2_lemma_counts": E("B2", "Captions per lemma of that class, and how many pass the threshold."),
    "02_kept_dropped_by_lemma": E(X, "Per matched lemma: captions the text filter keeps and drops at the threshold (polysemous lemmas show here)."),
    "02_kept_dropped_examples": E(X, "Each lemma's borderline captions: the lowest kept and the highest dropped."),
    "02_B3_relative_class_frequency": E("B3", "Relative frequency of LAIONet's classes, most frequent first (log scale)."),
    # 03: download
    "03_download_overall": E(X, "Download of LAIONet: rows, images downloaded, success rate."),
    "03_download_status": E(X, "Download outcome per row status."),
    "03_download_error_kinds": E(X, "Failed downloads by error kind (broken link, corrupt file, ...)."),
    "03_download_class_attrition": E(X, "Classes with at least one row vs at least one downloaded image."),
    "03_download_per_class": E(X, "Rows and downloaded images per class."),
    "03_download_success": E(X, "Download success and failures per error kind."),
    "03_download_examples": E(X, "One downloaded LAIONet image per class, read back from the shards."),
    "03_download_recognised_text": E(X, "Text read in the downloaded images (OCR, paper_spec A7): images read, with text, naming their class."),
    # 04: evaluation (paper §3.1)
    "04_accuracy": E("B5", "Top-1/top-5 accuracy per model on LAIONet and ImageNet, equally and LAION-weighted (zero-shot rows: B4).",
                     also=("B4", "B6")),
    "04_accuracy_drops": E("B5", "Accuracy drop from ImageNet to LAIONet per model and weighting."),
    "04_recognised_text": E(X, "LAIONet rows whose image shows its class's name as text (TMLR rule, A7), left out of the accuracies."),
    "04_accuracy_recognised_text": E("B5", "LAIONet accuracy with every row vs without the rows showing their class name (the TMLR exclusion's effect)."),
    "04_B4_zero_shot_per_class": E("B4", "Per class: CLIP zero-shot recall significantly lower / higher on LAIONet than on ImageNet."),
    "04_relative_frequency": E("B3", "Relative frequency of the evaluated LAIONet classes (stage 04's view of B3)."),
    "04_laionet_vs_imagenet_accuracy": E("B5", "Top-1 and top-5 accuracy, LAIONet (equal class weights) vs ImageNet val, per model."),
    "04_laionet_weighted_vs_equal": E("B6", "LAIONet: LAION-weighted vs equally weighted accuracy per model."),
    "04_imagenet_weighted_vs_equal": E("B6", "ImageNet val: LAION-weighted vs equally weighted accuracy per model."),
    "04_laionet_recall_vs_frequency": E("B7", "Per-class recall@1 on LAIONet vs the class's relative frequency in LAIONet."),
    "04_imagenet_recall_vs_frequency": E("B7", "Per-class recall@1 on ImageNet val vs the class's relative frequency in LAIONet."),
    "04_gap_distribution": E("B9", "Distribution of the per-class recall@5 gap, LAIONet minus ImageNet."),
    "04_gap_gallery": E("B9", "LAIONet images of the class with the largest gap (green: correct@5, red: wrong)."),
    # 05: intra-class similarity (paper §3.2, App. H)
    "05_intra_class_similarity_summary": E("B10", "Intra-class similarity, LAIONet vs ImageNet, per encoder: means and share of classes lower/higher."),
    "05_intra_class_sim_hist_{encoder}": E("B10", "Pooled intra-class image-image similarity, LAIONet vs ImageNet val (one encoder)."),
    "05_intra_class_sim_delta_{encoder}": E("B10", "Per-class difference of intra-class similarity, LAIONet minus ImageNet, with confidence bounds."),
    "05_prop_lower_higher_by_encoder": E("B11", "Share of classes significantly less / more similar in LAIONet than ImageNet, per image encoder."),
    "05_sim_vs_relative_frequency": E("B8", "LAIONet intra-class similarity vs class frequency (Spearman rho)."),
    "05_recall_vs_similarity_delta": E("B7", "Per-class LAIONet recall vs the intra-class similarity difference to ImageNet."),
    # 06: ImageNetV2 and selection frequency (paper §4.1)
    "06_v2_proportions": E("B12", "Share of classes less / more similar than each ImageNetV2 version, by selection frequency."),
    "06_prop_lower_higher_vs_selection_frequency": E("B12", "Share of classes less / more similar vs MTurk selection frequency (ImageNetV2 a/b/c)."),
    "06_hist_v2b_vs_v2c": E("B12", "Intra-class similarity: ImageNetV2 matched-frequency (b) vs top-images (c)."),
    "06_hist_laionet_vs_v2b": E("B12", "Intra-class similarity: LAIONet vs ImageNetV2 matched-frequency (b)."),
    "06_delta_laionet_vs_v2b": E("B12", "Per-class intra-class similarity difference, LAIONet minus ImageNetV2 (b)."),
    "06_similarity_vs_selection_frequency_threshold": E(X, "Intra-class similarity of ImageNetV2 candidates kept at each selection-frequency threshold."),
    "06_accuracy_laionet_vs_v2": E("B13", "Accuracy per model, LAIONet (equal weights) vs ImageNetV2 a/b/c."),
    # 07: text and image thresholds, datasets A-D (paper §4.2)
    "07_B14_frontier": E("B14", "Text/image threshold pairs (t, i(t)) keeping the reference sample count or class count."),
    "07_B14_frontier_fixed_n_sample": E("B14", "The threshold frontier: image threshold needed at each text threshold for a fixed dataset size."),
    "07_B15_share_at_or_below_imagenet": E("B15", "Datasets A-D: share of classes at or below ImageNet's intra-class similarity, per encoder."),
    "07_B15_avg_intra_class_similarity": E("B15", "Datasets A-D: average intra-class similarity vs ImageNet, per encoder."),
    "07_B15a_datasets_intra_class_histograms": E("B15", "Intra-class similarity histograms of datasets A, B and D (stricter image threshold: more similar)."),
    "07_B15b_datasets_avg_similarity": E("B15", "Average intra-class similarity of datasets A-D against ImageNet's."),
    "07_B15cd_datasets_share_lower": E("B15", "Share of classes at or below ImageNet's similarity, datasets A-D, per encoder."),
    "07_B19_image_to_synset_similarity": E("B19", "Image-to-synset similarity, LAIONet vs ImageNet val."),
    "07_B19b_image_to_synset_delta": E("B19", "Per-class image-to-synset similarity difference, LAIONet (resampled to 50) vs ImageNet val, with its test."),
    "07_B2_lemma_gallery": E("B2", "Images of one lemma of a class (puma of cougar) by text-similarity bin."),
    "07_EXT_laionet_thresholds_coverage_vs_similarity": E(X, "LAIONet at several text thresholds: classes covered vs average intra-class similarity."),
    "07_EXT_zero_shot_per_class_recall": E(X, "Per-class zero-shot recall, LAIONet vs ImageNet (stage 04's zero-shot model)."),
    # 08: text alone (paper §4.3)
    "08_B16_text_to_synset_similarity": E("B16", "Caption-to-synset similarity, LAIONet vs ImageNet-Captions (same text encoder)."),
    "08_B17_false_class_proportion": E("B17", "CDF of the share of false classes more similar to a caption than its true class."),
    "08_B17_false_class_proportion_binned": E("B17", "The same share, binned by the caption's similarity to its own class."),
    # 09: LAION retrieved by ImageNet captions (paper §4.4, B20)
    "09_B18a_text_retrieved_histogram": E("B18", "Intra-class similarity of LAION images retrieved by ImageNet captions vs ImageNet."),
    "09_B18b_text_retrieved_delta": E("B18", "Per-class intra-class similarity difference, text-retrieved LAION minus ImageNet."),
    "09_B18cd_text_retrieved_sweep": E("B18", "Retrieval threshold sweep: classes kept and share of classes lower / higher than ImageNet."),
    "09_B18_threshold_sweep": E("B18", "The numbers of the retrieval threshold sweep."),
    "09_B20a_laionet_vs_imagenet_captions_histogram": E("B20", "Intra-class similarity, LAIONet vs ImageNet-Captions (train) images."),
    "09_B20b_laionet_vs_imagenet_captions_delta": E("B20", "Per-class intra-class similarity difference, LAIONet minus ImageNet-Captions."),
    # made by the runner for a sweep (laionet.pipeline.sweeps.SUMMARIES)
    "sweep_summary": E(X, "Across the sweep's values: classes kept and LAIONet size per value."),
}
del X


def _pattern(stem: str) -> re.Pattern:
    parts = re.split(r"\{[a-z_]+\}", stem)
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")


_PATTERNS = [(_pattern(k), k) for k in CATALOG if "{" in k]


def key(stem: str) -> str | None:
    """The catalogue key of a saved file's stem (itself, or the ``{placeholder}`` family)."""
    if stem in CATALOG:
        return stem
    return next((k for pat, k in _PATTERNS if pat.match(stem)), None)


def lookup(stem: str) -> E | None:
    """The entry of a saved figure or table (``05_intra_class_sim_hist_demo_tower`` finds
    ``05_intra_class_sim_hist_{encoder}``), or None for one the catalogue does not know."""
    k = key(stem)
    return CATALOG[k] if k else None


def paper_order(paper: str) -> tuple[int, int]:
    """B1 < B2 < ... < B20 < extension (for sorting the report's summary)."""
    return (0, int(paper[1:])) if paper in PAPER else (1, 0)
