"""Models: text and image encoders behind one small interface (specs in :mod:`.text` and
:mod:`.image`), classifiers, label maps, packaged weights. Embeddings are stored by
``laionet.jobs.embedding_store`` (captions) and ``laionet.jobs.image_embeddings`` (images)."""

from laionet.models.common import NULL_TEXT, cosine_rowwise, l2_normalize
from laionet.models.image import ImageEncoder, load_image_encoder
from laionet.models.text import MINILM_NAME, TextEncoder, load_text_encoder

__all__ = ["NULL_TEXT", "cosine_rowwise", "l2_normalize", "ImageEncoder", "load_image_encoder",
           "MINILM_NAME", "TextEncoder", "load_text_encoder"]
