"""Text and image encoders behind one small interface.

    load_text_encoder(spec)  -> TextEncoder   (.name, .dim, .embed_texts(texts))
    load_image_encoder(spec) -> ImageEncoder  (.name, .dim, .preprocess(PIL), .embed_images(batch))
    cosine_rowwise(a, b)

Specs are documented in :mod:`.text` and :mod:`.image`. torch, open_clip, timm and
sentence-transformers are imported only when an encoder is loaded. Embeddings are stored by
``laionet.jobs.embedding_store`` (captions: ``embed_with_store``; images: ``laionet.jobs.image_embeddings``).
"""

from laionet.models.common import NULL_TEXT, cosine_rowwise, l2_normalize
from laionet.models.image import ImageEncoder, load_image_encoder
from laionet.models.text import MINILM_NAME, TextEncoder, load_text_encoder

__all__ = ["NULL_TEXT", "cosine_rowwise", "l2_normalize",
           "ImageEncoder", "load_image_encoder", "MINILM_NAME", "TextEncoder",
           "load_text_encoder"]
