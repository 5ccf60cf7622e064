"""laionet: the library behind the LAIONet companion notebooks, in layers.

A layer imports only the layers below it (import-linter checks it, pyproject.toml):

    pipeline   stages declared once, the papermill runner behind run_all.sh, the report page
    demo       the simulated world (never the pipeline)
    plots      figures: each builder returns a Figure; style.py saves them
    jobs       heavy, resumable work on files: parts, embeddings, downloads, inference, indexes
    method     the paper's rules as pure functions over tables and arrays (no files)
    models     text and image encoders, classifiers, label maps
    sources    readers of LAION parts, ImageNet, ImageNetV2, ImageNet-Captions, the class table
    paper | util   the paper's constants; atomic files, the one fingerprint, timings, paths

docs/DEVELOPING.md maps every rule of the paper (paper_spec A1-A21) to its module.
"""

import os as _os

_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
