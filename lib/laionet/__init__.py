"""laionet: the helper library of the LAIONet companion notebooks.

Modules (import them directly; nothing heavy is imported here):
    paths      project root, profile files, run and figure folders
    io         atomic writes of parquet / JSON / arbitrary files
    stage      stage manifests (parameters, inputs, versions, timings) and skip-if-done
    figures    one plotting style; save figures as PNG + PDF and tables as CSV + Markdown
    runner     the headless notebook runner behind run_all.sh (jupytext -> papermill)
    classes    the ImageNet class table, synset texts and lemma rules
    matching   the caption-lemma matcher (paper and normalized modes)
    shards     map a per-part function over parquet parts with any Executor
"""

__version__ = "0.1.0"
