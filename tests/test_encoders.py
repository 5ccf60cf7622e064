"""Encoders: exact length bucketing, the real MiniLM, the timm E.12 guard and the demo tower's
checkpoint round trip (their embedding store: tests/test_embedding_store.py)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from laionet.models import cosine_rowwise, load_image_encoder, load_text_encoder
from laionet.models.common import check_precision
from laionet.models.text import OpenClipTextEncoder, clip_tokenize

DOG = ("dog which is a member of the genus Canis (probably descended from the common wolf) that "
       "has been domesticated by man since prehistoric times; occurs in many breeds")
GUITAR = "electric guitar which is a guitar whose sound is amplified by electrical means"
EDGE_CASES = [None, "", "!!! wow !!!", "x", "a photo of a dog " * 30,  # > 77 tokens: truncated
              "Ünïcödé  café — 東京", "tiger cat which is a cat having a striped coat"]


def _reference_captions(reference, n: int) -> list[str]:
    table = pq.read_table(reference("img2dataset", "test_10000.parquet"), columns=["TEXT"])
    return table.column("TEXT").to_pylist()[:n]


@pytest.fixture(scope="module")
def clip_random():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        return load_text_encoder("open_clip:ViT-B-32:random", device="cpu")


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm", device="cpu")


# -- open_clip text tower -----------------------------------------------------------------------
def test_bucketing_is_exact_on_random_vit_b32(clip_random, reference, monkeypatch):
    texts = EDGE_CASES + _reference_captions(reference, 57)
    assert clip_random.bucketing and clip_random.name == "open_clip-ViT-B-32-RANDOM-INIT"
    widths = []
    real = OpenClipTextEncoder._embed_tokens_bucketed

    def spy(self, tokens):
        widths.append(tokens.shape[1])
        return real(self, tokens)

    monkeypatch.setattr(OpenClipTextEncoder, "_embed_tokens_bucketed", spy)
    bucketed = clip_random.embed_texts(texts, batch_size=16)
    fixed = clip_random.embed_texts_fixed(texts, batch_size=16)  # open_clip's encode_text, 77
    assert bucketed.shape == (len(texts), 512) and bucketed.dtype == np.float32
    # The speed-up really ran (short batches) and changed nothing beyond float rounding.
    assert min(widths) < 20 and max(widths) == 77
    assert np.abs(bucketed - fixed).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(bucketed, axis=1), 1.0, atol=1e-5)
    # A null caption is embedded as the string "None" (the authors' rule).
    np.testing.assert_allclose(bucketed[0], clip_random.embed_texts(["None"])[0], atol=1e-5)
    assert np.abs(bucketed[0] - bucketed[1]).max() > 1e-3  # ... and not like the empty string


def test_clip_token_lengths_find_eot_not_nonzeros(clip_random):
    tokens, lengths = clip_tokenize(clip_random.tokenizer, ["!a", "a dog", "a dog " * 50])
    # The length is EOT position + 1 (id 0, the padding, is also a vocabulary token: '!').
    assert lengths.tolist() == [4, 4, 77]
    assert tokens.dtype == np.int32 and tokens.shape == (3, 77)


def test_open_clip_weights_errors_name_the_fix():
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor a known tag"):
        load_text_encoder("open_clip:ViT-B-32:not-a-tag", device="cpu")
    try:  # offline (HF_HUB_OFFLINE=1 in conftest) and not in the HF cache: a clear error
        load_text_encoder("open_clip:ViT-B-32:openai", device="cpu")
    except RuntimeError as e:
        assert "local checkpoint file" in str(e) and "open_clip:ViT-B-32:/path/" in str(e)
    else:
        pytest.skip("OpenAI ViT-B-32 weights are in the local HF cache; nothing to refuse")


def test_bad_specs_are_explained():
    with pytest.raises(ValueError, match="unknown kind"):
        load_text_encoder("bert:base", device="cpu")
    with pytest.raises(ValueError, match="open_clip:<arch>:<tag"):
        load_text_encoder("open_clip:ViT-B-32", device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="expected one of"):
        check_precision("int8", "cuda")


# -- sentence-transformers ----------------------------------------------------------------------
def test_minilm_matches_sentence_transformers_and_ranks_synsets(minilm, reference):
    from sentence_transformers import SentenceTransformer

    from laionet.models.text import minilm_path

    captions = _reference_captions(reference, 10_000)
    dog_caption = "white and brown bulldog near window photo"
    guitar_caption = "Fender guitar stand 'Multi Stand 3', for 3 guitars"
    assert dog_caption in captions and guitar_caption in captions
    texts = [dog_caption, guitar_caption, None, *captions[:40]]
    emb = minilm.embed_texts(texts)
    assert minilm.name == "all-MiniLM-L6-v2" and emb.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    own = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        ["None" if t is None else t for t in texts], batch_size=64, normalize_embeddings=True)
    assert np.abs(emb - own).max() < 1e-5

    dog, guitar = minilm.embed_texts([DOG, GUITAR])
    sims = cosine_rowwise(emb[:2].repeat(2, axis=0), np.stack([dog, guitar, dog, guitar]))
    assert sims[0] > sims[1] + 0.1  # bulldog caption: dog synset over guitar synset
    assert sims[3] > sims[2] + 0.1  # guitar caption: guitar synset over dog synset


def test_missing_sentence_transformer_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_text_encoder(f"sentence-transformers:{tmp_path}/no-such-model-xyz", device="cpu")


def test_cosine_rowwise_normalises_both_sides():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[6.0, 8.0], [0.0, 2.0]])
    np.testing.assert_allclose(cosine_rowwise(a, b), [1.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="same shape"):
        cosine_rowwise(a, b[:1])


# -- image encoders -------------------------------------------------------------------------------
def _images():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    return [rgb, rgb.convert("L"), rgb.convert("RGBA"), rgb.convert("P")]


def test_timm_encoder_refuses_checkpoint_without_embedding_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_convnext", num_classes=5).eval()
    full = tmp_path / "convnext_full.safetensors"
    save_file(model.state_dict(), str(full))  # includes the classifier head: allowed
    enc = load_image_encoder(f"timm:test_convnext:{full}", device="cpu")
    x = torch.stack([enc.preprocess(im) for im in _images()])
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
    want = torch.nn.functional.normalize(want, dim=1).numpy()
    np.testing.assert_allclose(enc.embed_images(x), want, atol=1e-5)

    lacking = {k: v for k, v in model.state_dict().items() if k != "head.norm.weight"}
    bad = tmp_path / "convnext_no_norm.safetensors"
    save_file(lacking, str(bad))
    with pytest.raises(ValueError, match=r"head\.norm\.weight"):
        load_image_encoder(f"timm:test_convnext:{bad}", device="cpu")


def test_demo_tower_round_trip(tmp_path):
    from laionet.models.tower import build_tower, default_config, save_tower

    torch.manual_seed(0)
    cfg = default_config(embed_dim=16, input_size=32)
    model = build_tower(cfg).eval()
    path = save_tower(model, cfg, tmp_path / "tower.safetensors")
    enc = load_image_encoder(f"demo-tower:{path}", device="cpu")
    batch = torch.stack([enc.preprocess(im) for im in _images()])  # L/RGBA/P -> RGB
    assert batch.shape == (4, 3, 32, 32) and enc.dim == 16
    with torch.no_grad():
        want = torch.nn.functional.normalize(model(batch), dim=1).numpy()
    np.testing.assert_allclose(enc.embed_images(batch), want, atol=1e-6)

    cfg["widths"] = [8, 8, 8, 8]  # config no longer fits the weights -> clear error
    from laionet.util.files import write_json
    write_json(cfg, path.with_suffix(".json"))
    with pytest.raises(ValueError, match="do not fit"):
        load_image_encoder(f"demo-tower:{path}", device="cpu")


def test_open_clip_image_encoder_random(recwarn):
    enc = load_image_encoder("open_clip:ViT-B-32:random", device="cpu")
    batch = torch.stack([enc.preprocess(im) for im in _images()])
    emb = enc.embed_images(batch)
    assert emb.shape == (4, 512) and enc.name == "open_clip-ViT-B-32-RANDOM-INIT"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
