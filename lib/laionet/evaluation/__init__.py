"""Stage 04: evaluation of ImageNet classifiers on LAIONet vs ImageNet (paper §3.1).

    labels       label maps by wnid (timm's bundled synset lists, wnid files), coverage
    classifiers  Classifier specs, loading through timm (checkpoint file or hub tag), spec lists
    inference    decode-once batched evaluation -> one long per-image results table; zero-shot
    aggregate    per-class recall, equally / LAION-weighted accuracy with Wilson SE, projection;
                 stage 04's summary (accuracy and drop tables, per-class gaps)
    released     the authors' released correctness tables as our results table; their 978 keys
    pipeline     stage 04's two routes (inference, released tables) and its products
    plots        the accuracy figures (B3, B5-B7, B9)
"""

from .aggregate import (accuracy_table, class_frequency, drops_table, equally_weighted,
                        intersect_classes, laion_weighted, per_class_recall, per_class_recalls,
                        wilson_se)
from .classifiers import (Classifier, classifier_wnids, demo_classifiers, load_classifier,
                          paper_classifiers, paper_models, read_classifier_specs)
from .inference import (RESULT_SCHEMA, Predictor, classifier_predictor, decode_image, evaluate,
                        zero_shot_predictor)
from .labels import label_map_coverage, label_space_wnids, mapped_outputs, read_wnid_file
from .released import paper_laionet_keys, read_lemma_pairs, read_released

__all__ = [n for n in dir() if not n.startswith("_")]
