"""laionet: the helper library of the LAIONet companion notebooks.

Modules (import them directly; nothing heavy is imported here):
    paths      project root, profile files, run and figure folders
    io         atomic writes of parquet / JSON / arbitrary files
    stages     every stage declared once: inputs, products, caches, allowed parameter values
    stage      the contract: open_stage in a notebook; plan_stage + manifest for the runner
    params     notebook parameters read from the parameters cell, type-checked
    figures    one plotting style; save figures as PNG + PDF and tables as CSV + Markdown
    runner     the headless notebook runner behind run_all.sh (jupytext -> papermill)
    classes    the ImageNet class table, synset texts and lemma rules
    matching   the caption-lemma matcher (paper and normalized modes)
    keys       LAION part numbers and row keys (part * KEY_STRIDE + row): the one rule
    shards     map a per-part function over parquet parts with any Executor
    match_parts  stage 01's task: match each part's captions, summarize the matches
    embedding_store  one store of caption and image embeddings, keyed by row key and content
    image_embeddings  image sources, per-class samples and their embeddings through the store
"""

import os as _os

# Offline-safe from every entry point (JupyterLab, papermill by hand, tests), not only run_all.sh:
# albumentations, pulled in by img2dataset, otherwise asks the package index for a newer version
# at import time.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
