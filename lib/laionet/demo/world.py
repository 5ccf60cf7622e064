"""Build (or reuse) the demo world on disk: layout, orchestration, cache.

    paths = build_world("runs/demo/00_demo_world/world", size="demo", seed=0)

The world is built in a temporary sibling folder renamed into place when complete (a crash never
leaves a half-world). ``world.json`` holds a fingerprint of the generator's code and parameters:
a rerun with the same size and seed returns at once; models missing from a cached world
(``train_models=False`` before) are trained into it without regenerating data.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from laionet.demo import captions, formats, models, sampling, v2
from laionet.demo.classes import world_classes
from laionet.demo.text import write_texts
from laionet.models import tower
from laionet.sources.classes import class_table
from laionet.sources.laion import row_key
from laionet.util.files import read_json, write_json, write_text
from laionet.util.fingerprint import fingerprint
from laionet.util.timings import Timings

GENERATOR_VERSION = 1
STREAMS = ("world", "laion", "laion_pixels", "laion_files", "imagenet", "imagenet_pixels",
           "imagenetv2", "imagenetv2_pixels", "models", "laion_text")


@dataclass(frozen=True)
class WorldSize:
    """How big a world is (``SIZES``) and how long its models train."""
    n_laion: int
    n_parts: int
    n_train: int               # ImageNet-mini train images per class
    n_val: int                 # ImageNet-mini val images per class
    n_v2: int                  # ImageNetV2-mini images per class and version
    v2_pool: int               # ImageNetV2 candidates per class (each gets 10 votes)
    tower_pairs: int           # LAION pairs the tower trains on (CPU time ~ pairs x epochs)
    tower_epochs: int
    classifier_epochs: int     # over n_train x classes images
    n_votes: int = 10
    model_input: int = 32      # px the tower and the classifiers see (the world draws 64 px)


SIZES = {
    "demo": WorldSize(n_laion=24_000, n_parts=4, n_train=60, n_val=20, n_v2=10, v2_pool=80,
                      tower_pairs=4000, tower_epochs=3, classifier_epochs=5),
    "tiny": WorldSize(n_laion=1_500, n_parts=2, n_train=20, n_val=10, n_v2=5, v2_pool=40,
                      tower_pairs=2000, tower_epochs=8, classifier_epochs=20),
}

# LAION-mini's file faults (shares of rows) and metadata mix
FILE_FAULTS = {"missing": 0.015, "truncated": 0.005, "garbage": 0.005, "L": 0.01, "P": 0.005,
               "RGBA": 0.005, "CMYK": 0.005}
NSFW_MIX = {"UNLIKELY": 0.93, "UNSURE": 0.045, "NSFW": 0.015, None: 0.01}
LICENSES = {"?": 0.97, "https://creativecommons.org/licenses/by/4.0/": 0.02,
            "https://creativecommons.org/licenses/by-nc-sa/4.0/": 0.01}
TEXT_NULL_SHARE = 0.005
VAL_GREY_SHARE = 0.02   # real ImageNet val has grey-scale / CMYK files the paper skips
# LAION images showing their own class as text (a label, a caption burnt in): the truth of the
# recognised-text exclusion (paper_spec A7). Half of them show the WordNet head name (what the
# authors' rule looks for), half a lemma drawn from the class's lemmas (which may differ from it).
TEXT_IN_IMAGE_SHARE = 0.05

#: Where everything of a world lives, relative to its root (``WorldPaths`` attributes; the
#: pipeline's world keys, ``laionet.demo.layout``).
LAYOUT = {"world_json": "world.json", "classes_txt": "classes.txt", "laion": "laion",
          "http": "http", "imagenet": "imagenet", "imagenet_train": "imagenet/train",
          "imagenet_val": "imagenet/val", "imagenet_devkit": "imagenet/devkit",
          "imagenetv2": "imagenetv2", "imagenetv2_class_info": "imagenetv2/class_info.json",
          "selection_frequencies": "imagenetv2/selection_frequencies.parquet",
          "imagenet_captions": "imagenet_captions/imagenet_captions.json", "truth": "truth",
          "models": "models"}


@dataclass(frozen=True)
class WorldPaths:
    """A built world: ``world.<name>`` is the path ``LAYOUT[name]`` under ``root``."""
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def __getattr__(self, name: str) -> Path:
        if name not in LAYOUT:
            raise AttributeError(f"WorldPaths has no {name!r} (known: {sorted(LAYOUT)})")
        return self.root / LAYOUT[name]

    def laion_parts(self) -> list[Path]:
        return sorted(self.laion.glob("part-*.parquet"))

    def imagenetv2_version(self, version: str) -> Path:
        return self.imagenetv2 / f"imagenetv2-{version}-format-val"

    def truth_table(self, name: str) -> pd.DataFrame:
        """A hidden ground-truth table: classes, laion, imagenet, imagenet_candidates, imagenetv2."""
        return pd.read_parquet(self.truth / f"{name}.parquet")

    def info(self) -> dict:
        return read_json(self.world_json)

    def images(self, rel_paths) -> np.ndarray:
        """The files at ``rel_paths`` (relative to the root) as RGB: [n, H, W, 3] uint8."""
        return np.stack([np.asarray(Image.open(self.root / p).convert("RGB")) for p in rel_paths])

    def model_files(self) -> dict[str, Path]:
        """The trained checkpoints world.json records: ``image_tower`` and one per classifier
        arch (empty without models or without world.json)."""
        m = (self.info() if self.world_json.is_file() else {}).get("models") or {}
        rel = {"image_tower": m["image_tower"]} if m.get("image_tower") else {}
        return {k: self.models / v for k, v in {**rel, **(m.get("classifiers") or {})}.items()}


GENERATOR_MODULES = ("classes", "images", "sampling", "captions", "v2", "formats", "text", "world")


def _source_digest(*files: Path) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def generator_digest() -> str:
    """sha256 of the generator's source files: any code change invalidates cached worlds."""
    return _source_digest(*(Path(__file__).parent / f"{m}.py" for m in GENERATOR_MODULES))


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS.index(stream)])


def _choice(mapping: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    keys, p = np.array(list(mapping), dtype=object), np.array(list(mapping.values()), np.float64)
    return keys[rng.choice(len(keys), n, p=p / p.sum())]


# -- LAION-mini ------------------------------------------------------------------------------------

def _laion_similarity(samples: pd.DataFrame, parts: pd.DataFrame,
                      rng: np.random.Generator) -> np.ndarray:
    """A CLIP-like caption-image score, from what the simulation knows agrees:
    0.30 + 0.12 * (0.55 [caption names the pictured class] + 0.15 [colour word right]
    + 0.30 * typicality [a class image]) + 0.02 |noise|. LAION-400M kept pairs >= 0.3."""
    shows = samples["label"].to_numpy() >= 0
    names = (samples["mention"].to_numpy() == samples["label"].to_numpy()) & shows
    agree = (0.55 * names + 0.15 * parts["colour_ok"].to_numpy()
             + 0.30 * samples["typicality"].to_numpy() * shows)
    return 0.30 + 0.12 * agree + 0.02 * np.abs(rng.standard_normal(len(samples)))


def _build_laion(world, cfg: WorldSize, seed: int, paths: WorldPaths) -> pd.DataFrame:
    """LAION-mini: parts, served files; returns the truth table (one row per LAION row)."""
    rng, n = _rng(seed, "laion"), cfg.n_laion
    s = sampling.draw(world, n, rng)
    parts = captions.compose(world, s, rng)
    pixels = sampling.render(world, s, _rng(seed, "laion_pixels"))
    pixels, written = _write_class_text(world, s, pixels, _rng(seed, "laion_text"))
    part = (np.arange(n) * cfg.n_parts // n).astype(np.int32)
    row = (np.arange(n) - np.searchsorted(part, part)).astype(np.int64)
    frng = _rng(seed, "laion_files")
    status = _choice({"ok": 1 - sum(FILE_FAULTS.values()), **FILE_FAULTS}, n, frng)
    ext = np.where(np.isin(status, ("P", "RGBA")), ".png", ".jpg")
    rel = (pd.Series(part).map("img/{:05d}/".format) + pd.Series(row).map("{:08d}".format)
           + ext).to_numpy()
    text = parts["text"].to_numpy(dtype=object).copy()
    text[frng.random(n) < TEXT_NULL_SHARE] = None
    meta = pd.DataFrame({
        # SAMPLE_IDs: unique, increasing, float64 as in the released parts
        "SAMPLE_ID": (np.cumsum(frng.integers(1, 2000, n)) + 1_000_000_000).astype(np.float64),
        "URL": formats.DEMO_URL_PREFIX + rel, "TEXT": text,
        "HEIGHT": np.full(n, pixels.shape[1], np.int64), "WIDTH": np.full(n, pixels.shape[2], np.int64),
        "LICENSE": _choice(LICENSES, n, frng), "NSFW": _choice(NSFW_MIX, n, frng),
        "similarity": _laion_similarity(s, parts, frng),
    })
    for p in range(cfg.n_parts):
        formats.write_laion_part(meta[part == p], paths.laion, p)
    _write_laion_files(pixels, status, rel, paths.http, frng)
    return pd.concat([pd.DataFrame({"part": part, "row": row, "key": row_key(part, row),
                                    "path": "http/" + rel, "file_status": status}),
                      s, parts.drop(columns=["text"]),
                      meta[["TEXT", "NSFW", "similarity"]], written], axis=1)


def _write_class_text(world: sampling.World, samples: pd.DataFrame, pixels: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Write a name of the shown class into ``TEXT_IN_IMAGE_SHARE`` of the images that show a
    class (its own stream, so every other pixel and draw stays as it was). Returns the pixels and
    the truth columns ``text_in_image`` (the written string, else null) and ``text_is_head``."""
    label = samples["label"].to_numpy()
    shown = np.where(label >= 0, label, 0)
    chosen = (label >= 0) & (rng.random(len(label)) < TEXT_IN_IMAGE_SHARE)
    head = world.classes["head"].to_numpy(dtype=object)[shown]
    lemma = sampling.pick_lemma(world, shown, rng)
    text = np.where(rng.random(len(label)) < 0.5, head, lemma).astype(object)
    text[~chosen] = None
    return write_texts(pixels, list(text), rng), pd.DataFrame({
        "text_in_image": pd.Series(text, dtype=object), "text_is_head": chosen & (text == head)})


def _write_laion_files(pixels: np.ndarray, status: np.ndarray, rel: np.ndarray, http: Path,
                       rng: np.random.Generator) -> None:
    """One file per row, except "missing" (a real 404); faults as their status says."""
    garbage_seed = int(rng.integers(0, 2 ** 31))
    for i, st in enumerate(status):  # one encode per image: PIL has no batch JPEG encoder
        if st == "missing":
            continue
        if st == "garbage":
            data = np.random.default_rng([garbage_seed, i]).bytes(700)
        elif st in ("P", "RGBA"):
            data = formats.encode_image(pixels[i], st, "PNG")
        else:
            data = formats.encode_image(pixels[i], "RGB" if st in ("ok", "truncated") else st)
            if st == "truncated":
                data = data[: len(data) // 2]
        formats.write_bytes(http / rel[i], data)


# -- ImageNet-mini (text-found candidates, image-based acceptance) ---------------------------------

def _search_and_annotate(world, need: int, rng, *, max_rounds: int = 100) -> pd.DataFrame:
    """Search by text until each class has ``need`` accepted candidates; one annotator decision
    per candidate. Returns every candidate (accepted or not) in search order."""
    got = np.zeros(world.n_classes, dtype=int)
    batches = []
    for _ in range(max_rounds):
        short = np.flatnonzero(got < need)
        if not len(short):
            break
        query = np.repeat(short, np.ceil((need - got[short]) / 0.3).astype(int) + 4)
        cand = sampling.draw(world, len(query), rng, query=query)
        cand["query"] = query.astype(np.int16)
        cand["accepted"] = rng.random(len(cand)) < sampling.accept_probability(cand, query)
        parts = captions.compose(world, cand, rng).rename(columns={"text": "caption"})
        batches.append(pd.concat([cand, parts], axis=1))
        got += np.bincount(query[cand["accepted"].to_numpy()], minlength=world.n_classes)
    else:
        raise RuntimeError(f"ImageNet-mini: classes {np.flatnonzero(got < need).tolist()} got too "
                           f"few accepted candidates after {max_rounds} search rounds")
    return pd.concat(batches, ignore_index=True)


def _build_imagenet(world, cfg: WorldSize, seed: int,
                    paths: WorldPaths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ImageNet-mini train/val + devkit + ImageNet-Captions; returns (truth of kept images, all
    candidates)."""
    rng = _rng(seed, "imagenet")
    cand = _search_and_annotate(world, cfg.n_train + cfg.n_val, rng)
    acc = cand[cand["accepted"]].copy()
    acc["rank"] = acc.groupby("query").cumcount()
    acc = acc[acc["rank"] < cfg.n_train + cfg.n_val].sort_values(["query", "rank"])
    acc["split"] = np.where(acc["rank"] < cfg.n_train, "train", "val")
    acc = acc.reset_index(drop=True)
    pixels = sampling.render(world, acc, _rng(seed, "imagenet_pixels"))
    wnid = world.classes["wnid"].to_numpy()[acc["query"].to_numpy()]
    train = acc["split"].to_numpy() == "train"
    val_pos = np.flatnonzero(~train)[rng.permutation(int((~train).sum()))]  # val files shuffled
    filename = np.empty(len(acc), dtype=object)
    filename[train] = [f"{w}_{r}.JPEG" for w, r in zip(wnid[train], acc["rank"].to_numpy()[train])]
    filename[val_pos] = [formats.VAL_NAME.format(i + 1) for i in range(len(val_pos))]
    path = np.where(train, "imagenet/train/" + wnid + "/" + filename, "imagenet/val/" + filename)
    mode = np.where(~train & (rng.random(len(acc)) < VAL_GREY_SHARE), "L", "RGB")
    # val images get 10 fresh votes too: ImageNetV2's matched-frequency needs their histogram
    p = sampling.accept_probability(acc, acc["query"].to_numpy())
    votes = np.where(train, -1, rng.binomial(cfg.n_votes, p))
    for px, q, m in zip(pixels, path, mode):
        formats.write_bytes(paths.root / q, formats.encode_image(px, str(m)))
    formats.write_imagenet_devkit(world.classes, acc["query"].to_numpy()[val_pos],
                                  paths.imagenet_devkit)
    truth = pd.concat([pd.DataFrame({"dataset": "imagenet_" + acc["split"], "path": path,
                                     "filename": filename, "wnid": wnid, "mode": mode,
                                     "n_votes_yes": votes.astype(np.int16)}),
                       acc.drop(columns=["split", "accepted"])], axis=1)
    # ImageNet-Captions: the captions the train images were found by
    tr = truth[truth["dataset"] == "imagenet_train"]
    formats.write_imagenet_captions(captions.imagenet_captions_fields(tr).assign(
        filename=tr["filename"], wnid=tr["wnid"]), paths.imagenet_captions)
    return truth, cand


# -- ImageNetV2-mini -------------------------------------------------------------------------------

def _build_imagenetv2(world, cfg: WorldSize, seed: int, paths: WorldPaths,
                      val_freq: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """ImageNetV2-mini: a voted pool per class, three versions; returns (pool truth, shortfalls)."""
    rng = _rng(seed, "imagenetv2")
    query = np.repeat(np.arange(world.n_classes), cfg.v2_pool)
    pool = sampling.draw(world, len(query), rng, query=query)
    pool["query"] = query.astype(np.int16)
    pool["n_votes_yes"] = rng.binomial(cfg.n_votes, sampling.accept_probability(pool, query))
    pool["selection_frequency"] = pool["n_votes_yes"] / cfg.n_votes
    chosen, short = v2.sample_versions(pool.assign(label=pool["query"]), val_freq, cfg.n_v2, rng)
    used = np.unique(np.concatenate(list(chosen.values())))
    pixels = sampling.render(world, pool.iloc[used].reset_index(drop=True),
                             _rng(seed, "imagenetv2_pixels"))
    data = {int(i): formats.encode_image(pixels[j]) for j, i in enumerate(used)}
    cid, wnid = (world.classes[c].to_numpy()[query] for c in ("cid", "wnid"))
    rows = []  # (version, pool row, path) of every released image
    for version, idx in chosen.items():
        for i in idx:
            name = f"{cid[i]}/{hashlib.sha1(data[int(i)]).hexdigest()}.jpeg"
            formats.write_bytes(paths.imagenetv2_version(version) / name, data[int(i)])
            rows.append((version, int(i), f"imagenetv2-{version}-format-val/{name}"))
    formats.write_class_info(class_table("imagenet1k", head_source="timm"),
                             paths.imagenetv2_class_info)
    version, r, path = (list(c) for c in zip(*rows))
    formats.write_parquet_deterministic(pd.DataFrame({
        "version": version, "path": path, "wnid": wnid[r],
        "n_votes_yes": pool["n_votes_yes"].to_numpy()[r].astype(np.int64),
        "n_votes": np.int64(cfg.n_votes), "selection_frequency": pool["selection_frequency"].to_numpy()[r],
        "typicality": pool["typicality"].to_numpy()[r].astype(np.float64),
    }), paths.selection_frequencies)
    for v, idx in chosen.items():
        pool[f"in_{v}"] = np.isin(np.arange(len(pool)), idx)
    pool["wnid"] = wnid
    return pool, short


# -- Orchestration and cache -----------------------------------------------------------------------

def _generate(paths: WorldPaths, size: str, seed: int, timings: Timings) -> dict:
    """Write every data file of the world into ``paths.root``; return the counts."""
    cfg = SIZES[size]
    with timings("classes"):
        classes = world_classes(size)
    world = sampling.make_world(classes, _rng(seed, "world"))
    write_text("".join(w + "\n" for w in classes["wnid"]), paths.classes_txt)
    with timings("laion"):
        laion = _build_laion(world, cfg, seed, paths)
    with timings("imagenet"):
        imagenet, cand = _build_imagenet(world, cfg, seed, paths)
    val_freq = imagenet.loc[imagenet["dataset"] == "imagenet_val", "n_votes_yes"] / cfg.n_votes
    with timings("imagenetv2"):
        pool, short = _build_imagenetv2(world, cfg, seed, paths, val_freq.to_numpy())
    cls = pd.concat([classes.drop(columns=["lemmas"]).assign(lemmas=classes["lemmas"]),
                     world.prototypes, pd.DataFrame({"class_freq": world.class_freq})], axis=1)
    for name, df in (("classes", cls), ("laion", laion), ("imagenet", imagenet),
                     ("imagenet_candidates", cand), ("imagenetv2", pool)):
        formats.write_parquet_deterministic(df, paths.truth / f"{name}.parquet")
    return {"classes": len(classes), "laion_rows": len(laion),
            "laion_file_status": _counts(laion["file_status"]), "laion_kinds": _counts(laion["kind"]),
            "imagenet_train": int((imagenet["dataset"] == "imagenet_train").sum()),
            "imagenet_val": int((imagenet["dataset"] == "imagenet_val").sum()),
            "imagenet_candidates": len(cand), "imagenetv2_pool": len(pool),
            "imagenetv2_shortfall": short}


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def _train_models(paths: WorldPaths, out: Path, cfg: WorldSize, seed: int,
                  timings: Timings) -> dict:
    """Train the image tower on LAION-mini pairs and the classifiers on ImageNet-mini train,
    reading the images back from the world's files (what every later stage sees)."""
    laion, train = paths.truth_table("laion"), paths.truth_table("imagenet")
    ok = laion[(laion["file_status"] == "ok") & laion["TEXT"].notna()]
    train = train[train["dataset"] == "imagenet_train"]
    wnids = paths.classes_txt.read_text().split()
    labels = train["wnid"].map({w: i for i, w in enumerate(wnids)}).to_numpy(np.int64)
    with timings("image_tower"):  # only the sampled pairs' images are decoded
        ok = ok.iloc[models.pair_sample(len(ok), cfg.tower_pairs, seed)]
        tower_ckpt = models.train_image_tower(
            paths.images(ok["path"]), ok["TEXT"].tolist(), out / "image_tower.safetensors",
            seed=seed, epochs=cfg.tower_epochs, max_pairs=None, input_size=cfg.model_input)
    train_px = models.shrink(paths.images(train["path"]), cfg.model_input)
    done = {}
    for arch in models.DEMO_CLASSIFIER_ARCHS:
        with timings(f"classifier_{arch}"):
            done[arch] = models.train_classifier(arch, train_px, labels, wnids, out, seed=seed,
                                                 epochs=cfg.classifier_epochs).name
    return {"image_tower": tower_ckpt.name, "classifiers": done}


@contextlib.contextmanager
def replaced_when_done(dest: Path) -> Iterator[Path]:
    """A temporary folder beside ``dest`` that replaces it when the block ends without an error
    (the old one moved aside, then removed) and is removed otherwise."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_world(world_dir: str | os.PathLike, size: str = "demo", seed: int = 0,
                train_models: bool = True, force: bool = False) -> WorldPaths:
    """Generate the demo world into ``world_dir`` (or reuse it) and return its ``WorldPaths``.

    Deterministic: the same size and seed give byte-identical data files. ``world.json``
    records the seed, size, parameters, fingerprint, counts and timings (seconds).
    """
    if size not in SIZES:
        raise ValueError(f"world size {size!r}: expected one of {sorted(SIZES)}")
    cfg, seed, paths = SIZES[size], int(seed), WorldPaths(Path(world_dir).resolve())
    data_fp = fingerprint({"generator": GENERATOR_VERSION, "code": generator_digest(),
                           "size": size, "seed": seed, "params": asdict(cfg)})
    try:
        info = read_json(paths.world_json)
    except (OSError, ValueError):
        info = {}
    if force or info.get("fingerprint") != data_fp:
        with replaced_when_done(paths.root) as tmp:
            timings, cpu0 = Timings(), time.process_time()
            with timings("generate_total"):
                counts = _generate(WorldPaths(tmp), size, seed, timings)
            # CPU seconds too: wall time on a shared machine says little about the work
            timings["generate_cpu"] = round(time.process_time() - cpu0, 3)
            info = {"seed": seed, "size": size, "generator_version": GENERATOR_VERSION,
                    "fingerprint": data_fp, "params": asdict(cfg), "counts": counts,
                    "timings_s": dict(timings), "models": None}
            write_json(info, WorldPaths(tmp).world_json)
    if not train_models:
        return paths
    # the models: keyed by the data (whose parameters hold the epochs), their code and archs
    models_fp = fingerprint({"data": data_fp, "archs": list(models.DEMO_CLASSIFIER_ARCHS),
                             "code": _source_digest(Path(models.__file__), Path(tower.__file__))})
    have = info.get("models") or {}
    if have.get("fingerprint") != models_fp or not (paths.models / have["image_tower"]).is_file():
        timings, cpu0 = Timings(), time.process_time()
        with replaced_when_done(paths.models) as tmp, timings("models_total"):
            done = _train_models(paths, tmp, cfg, seed, timings)
        write_json({**info, "models": {"fingerprint": models_fp, **done}, "timings_s": {
            **info["timings_s"], **timings, "models_cpu": round(time.process_time() - cpu0, 3)}},
            paths.world_json)
    return paths
