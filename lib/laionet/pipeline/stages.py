"""The pipeline, declared once: each stage's inputs, products and caches.

A notebook opens its stage with ``laionet.pipeline.stage.open_stage(NAME, globals())``; the
runner uses the same declarations to resolve inputs, skip current stages and write manifests.
An input resolves, first match wins, as
1. the notebook parameter of the same name, when it is set (non-empty);
2. the product of the upstream stage of the same profile (``upstream``/``product``);
3. the demo world's file (``world``: a key of ``laionet.demo.layout.WORLD``), when the profile
   has a world (it lists ``00_demo_world``);
4. ``fallback``, a constant (``imagenet1k`` for class lists).
Nothing matched: a clear error that names the parameter and the notebook that makes the file,
unless the input is ``optional`` (it resolves to None).

To add a stage: write ``notebooks/NN_name.py`` and add a ``StageSpec`` here (docs/DEVELOPING.md).
"""

from dataclasses import dataclass, replace

from laionet.paper import CLIP_B32

WORLD_STAGE = "00_demo_world"

# Parameters whose name means the same thing in every notebook that declares it: an unscoped
# override (`-p seed 1`, a profile's top-level `parameters:`) sets them everywhere. Any other
# name declared by several of the selected notebooks must be scoped (`-p 02.threshold 0.8`).
SHARED = frozenset({
    "profile", "out_dir", "figures_dir", "seed", "device", "precision", "batch_size",
    "n_workers", "laion_parts", "classes", "text_encoder", "image_encoder", "nsfw_rule",
    "query", "n_per_class", "ci_method", "n_boot", "min_pairs", "classifiers",
    "imagenet_val_dir", "imagenet_devkit_dir", "imagenet_ground_truth", "imagenet_train_dir",
    "captions_json", "imagenetv2_root", "laionet_path", "download_dir", "eval_dir",
    "matches_dir", "candidates_dir", "similarity_dir", "class_counts_path", "image_size",
    "resize_only_if_bigger", "world_size", "download_processes", "authors_class_list",
    "head_source",
})


# Allowed values, checked by the runner before any kernel starts, in every notebook that declares
# the name: a closed set of choices, or (low, high) bounds for a number (None: unbounded).
CHOICES = {
    "world_size": ("demo", "tiny"),
    "lemma_rule": ("unique_in_imagenet", "unique_in_wordnet"),
    "mode": ("paper", "normalized"),
    "nsfw_rule": ("paper", "unlikely_or_unsure", "ignore"),          # selection.NSFW_RULES
    "query": ("name", "name_def", "lemmas_or", "a_photo_of_name", "a_photo_of_name_def",
              "a_clear_photo_of_name_def", "a_photo_of_lemmas"),   # classes.QUERY_COLUMNS
    "ci_method": ("bootstrap", "paper"),
    "threshold_mode": ("absolute", "quantile"),
    "precision": ("fp32", "fp16", "bf16"),
    "head_source": ("wordnet", "timm"),                              # classes.HEAD_SOURCES
    "distributor": ("multiprocessing", "pyspark", "ray"),
    "ocr_engine": ("easyocr", "rapidocr", "tesseract"),                # recognised_text.ENGINES
    "recognised_text_rule": ("head", "lemmas"),                         # recognised_text.RULES
    "on_error": ("raise", "skip"),
}
RANGES = {
    "threshold": (-1.0, 1.0), "t_ref": (-1.0, 1.0), "i_ref": (-1.0, 1.0), "t_min": (-1.0, 1.0),
    "p_at": (0.0, 1.0), "n_workers": (1, None), "batch_size": (1, None), "top_k": (1, None),
    "n_per_class": (2, None), "n_boot": (1, None), "min_pairs": (1, None), "image_size": (1, None),
    "k": (1, None), "nprobe": (1, None), "processes_count": (1, None), "thread_count": (1, None),
    "number_sample_per_shard": (1, None), "retries": (0, None), "timeout": (1, None),
    "n_grid": (2, None), "bins": (1, None), "hist_bins": (1, None), "ocr_batch_size": (1, None),
    "max_models": (1, None), "val_shard_size": (1, None), "chunk_rows": (1, None),
    "train_size": (0, None),
}


def allowed(name: str, value) -> str | None:
    """None when ``value`` is allowed for ``name``, else what is (for the error message)."""
    if name in CHOICES and value not in CHOICES[name]:
        return f"one of {list(CHOICES[name])}"
    if name in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = RANGES[name]
        if (low is not None and value < low) or (high is not None and value > high):
            return f"in [{low}, {'inf' if high is None else high}]"
    return None


@dataclass(frozen=True)
class Input:
    """One input of a stage. ``name`` is the notebook parameter that may set it (and the
    attribute on ``Stage.inputs``); ``kind`` says how it is checked and fingerprinted:
    ``path`` (a file or folder that must exist), ``glob`` (matches at least one file),
    ``spec`` (a model spec string; files inside it are fingerprinted), ``specs`` (a list
    of them: a ``list`` parameter; the world's one spec becomes a list of one), ``classes``
    (``imagenet1k`` or a wnid file)."""

    name: str
    upstream: str | None = None
    product: str = ""
    world: str | None = None
    fallback: str | None = None
    kind: str = "path"
    optional: bool = False
    unless: str | None = None  # not needed when this parameter is set (another route)
    param: bool = True         # False: not a notebook parameter (only upstream / world)


@dataclass(frozen=True)
class StageSpec:
    """A stage: its inputs, its products (paths in its folder, ``{param}`` filled in; removed
    before a run whose parameters or inputs changed) and the shared caches it uses."""

    name: str
    question: str
    inputs: tuple[Input, ...] = ()
    products: tuple[str, ...] = ()
    caches: tuple[str, ...] = ()
    keep_products: bool = False  # True: the stage reuses its own products (the demo world)


def _up(name: str, stage: str, product: str = "", **kw) -> Input:
    return Input(name, upstream=stage, product=product, **kw)


_M01, _C02, _D03, _E04, _S05 = ("01_synset_matching", "02_caption_filtering", "03_download",
                               "04_evaluation", "05_intra_class_similarity")
LAION_PARTS = Input("laion_parts", world="laion_parts", kind="glob")
CLASSES = Input("classes", world="classes", fallback="imagenet1k", kind="classes")
LAIONET = _up("laionet_path", _C02, "laionet.parquet")
CLASS_COUNTS = _up("class_counts_path", _M01, "class_counts.parquet", optional=True)
DOWNLOAD = _up("download_dir", _D03)
EVAL = _up("eval_dir", _E04, optional=True)
VAL = Input("imagenet_val_dir", world="imagenet_val")
DEVKIT = Input("imagenet_devkit_dir", world="imagenet_devkit")
CAPTIONS = Input("captions_json", world="imagenet_captions")
HTTP = Input("http_root", world="http", optional=True, param=False)  # the demo's loopback web
TRUTH = Input("truth", world="truth", optional=True, param=False)
TOWER = "image_tower"  # world key of the demo's image tower spec
ENCODER = Input("image_encoder", world=TOWER, fallback=CLIP_B32, kind="spec")

STAGES: dict[str, StageSpec] = {s.name: s for s in [
    StageSpec(
        WORLD_STAGE, "Generate (or reuse) the demo world and check its causal structure",
        products=("world",), keep_products=True),
    StageSpec(
        _M01, "Which captions contain a lemma of an ImageNet class?",
        inputs=(LAION_PARTS, CLASSES),
        products=("matches", "rows", "done", "class_counts.parquet", "lemma_counts.parquet",
                  "summary.json")),
    StageSpec(
        _C02, "Which matched captions are close enough to their class's synset text?",
        inputs=(_up("matches_dir", _M01), LAION_PARTS, CLASSES, TRUTH),
        products=("candidates", "done", "candidates.parquet", "laionet.parquet",
                  "laionet_top{top_k}.parquet", "summary.json"),
        caches=("text_embeddings",)),
    StageSpec(
        _D03, "Download LAIONet's images once, and account for every row",
        inputs=(LAIONET, HTTP, TRUTH),
        # + shards/<input fingerprint>/; recognized_text.parquet: the text read in each image (A7)
        products=("manifest.parquet", "download_input.json", "recognized_text.parquet"),
        caches=("shards", "recognised_text")),
    StageSpec(
        _E04, "Do ImageNet classifiers lose accuracy on LAIONet?",
        # the released tables (released_val_parquet, ...) replace the pipeline's own inputs
        inputs=(CLASSES, *(replace(i, unless="released_val_parquet") for i in (
                    DOWNLOAD, LAIONET, CLASS_COUNTS, VAL, DEVKIT,
                    Input("classifiers", world="classifiers", kind="spec"),
                    Input("zero_shot_encoder", world=TOWER, kind="spec", optional=True))),
                Input("universe", kind="classes", optional=True),
                *(Input(f"released_{n}", optional=True)
                  for n in ("val_parquet", "imagename2wnid", "lemma_map", "laionet_parquet")),
                Input("released_laion_parts", kind="glob", optional=True)),
        # + results_parts/: each (model, shard) result keyed by what made it (a done Marker), so
        # it outlives a changed parameter: only the results whose key changed are computed again
        products=("results_laionet.parquet", "results_imagenet.parquet", "groups.json",
                  "coverage.json", "accuracy.parquet")),
    StageSpec(
        _S05, "Is LAIONet less similar within each class than ImageNet?",
        inputs=(DOWNLOAD, LAIONET, VAL, replace(DEVKIT, unless="imagenet_ground_truth"),
                Input("image_encoders", world=TOWER, kind="specs"), EVAL),
        products=("samples.parquet", "class_stats.parquet", "comparison.parquet",
                  "summary.parquet", "pooled.parquet", "encoders.json"),
        caches=("image_embeddings",)),
    StageSpec(
        "06_imagenetv2_selection_frequency",
        "Does a higher selection frequency make ImageNetV2 more similar within a class?",
        inputs=(Input("imagenetv2_root", world="imagenetv2"),
                Input("class_info", world="imagenetv2_class_info", optional=True),
                Input("selection_frequencies", world="selection_frequencies", optional=True),
                _up("similarity_dir", _S05), DOWNLOAD,
                Input("image_encoder", kind="spec", optional=True),  # empty: 05's first encoder
                Input("classifiers", world="classifiers", kind="spec", optional=True), EVAL,
                # B13 projects the releases onto LAIONet's keys, as stage 04 projects ImageNet
                CLASS_COUNTS, replace(LAIONET, optional=True)),
        products=("comparison.parquet", "proportions.parquet", "selection_frequency_curve.parquet",
                  "accuracy.parquet"),
        caches=("image_embeddings",)),
    StageSpec(
        "07_image_to_selection_link",
        "Does thresholding the image as well as the text make a dataset look like ImageNet?",
        inputs=(_up("candidates_dir", _C02), DOWNLOAD, HTTP, VAL, DEVKIT, ENCODER, EVAL),
        products=("image_similarity.parquet", "frontier.parquet", "datasets.parquet",
                  "intra_class_stats.parquet", "summary.json"),
        caches=("image_embeddings", "shards")),
    StageSpec(
        "08_text_alone", "Can the text alone explain ImageNet's selection?",
        inputs=(CAPTIONS, LAIONET, CLASSES),
        products=("false_class_proportion.parquet", "summary.json"),
        caches=("text_embeddings",)),
    StageSpec(
        "09_text_retrieved_imagenet",
        "Does LAION searched with ImageNet's captions look like ImageNet?",
        inputs=(LAION_PARTS, CAPTIONS, Input("imagenet_train_dir", world="imagenet_train"),
                LAIONET, DOWNLOAD, HTTP, ENCODER),
        products=("retrieved.parquet", "per_class_comparison.parquet", "summary.json"),
        caches=("text_embeddings", "image_embeddings", "caption_index", "shards")),
]}


def spec(name: str) -> StageSpec:
    """The declaration of a stage; a notebook nobody declared yet gets an empty one (no inputs,
    no products; skipped only while its parameters and source are unchanged), so a new notebook
    runs before its StageSpec is written."""
    return STAGES.get(name) or StageSpec(name, "(not declared in laionet.pipeline.stages)")
