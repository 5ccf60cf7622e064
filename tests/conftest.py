"""Shared test setup: offline settings, the reference data folder, small helpers."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

# Signals as a terminal gives them. A shell without job control starts a background job (``cmd &``)
# with SIGINT ignored, and an ignored signal stays ignored through exec: pytest, the runner, its
# kernels and img2dataset would all start deaf to Ctrl-C and CPython would install no
# KeyboardInterrupt handler. A handled signal is reset to its default at exec, so restoring the
# handler here gives every process the tests start the disposition an interactive shell gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

# Under pytest-xdist (``./run_all.sh test`` starts one worker per core) the cores are shared out:
# each worker, and every kernel or process it starts, gets its share of threads instead of all of
# them (two workers each spinning two BLAS threads on two cores run several times slower).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LAIONET_REFERENCE", ROOT.parent / "shared" / "reference"))


def reference_file(*parts: str) -> Path:
    """A file of ../shared/reference, or skip the test saying what is missing."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (set LAIONET_REFERENCE to the folder "
                    "holding eval-on-laion/ and img2dataset/)")
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The session's two long fixtures each stay on one xdist worker (``--dist loadgroup``): every test
# that reads the tiny run shares one, every test that reads the rehearsal the other. The longest
# work is queued first so that no worker starts it last while the other sits idle.
_FIRST = ("rehearsal_run", "tiny_run")
_LONG_FILES = ("test_kill.py", "test_kill_resume.py", "test_golden_effnet_lite.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    def group(item):
        names = getattr(item, "fixturenames", ())
        return next((f for f in _FIRST if f in names), None)

    def rank(item):
        g = group(item)
        return _FIRST.index(g) if g else len(_FIRST) + (item.path.name not in _LONG_FILES)

    for item in items:
        if g := group(item):
            item.add_marker(pytest.mark.xdist_group(g))
    items.sort(key=rank)


@pytest.fixture
def reference():
    return reference_file


# ---------------------------------------------------------------- images and their embeddings

class ColourEncoder:
    """A stand-in image encoder: an image's embedding is its mean colour (+1, so black is not
    zero), unit-normalised; ``n`` counts the images it embedded."""

    name = "colour-v1"
    dim = 3

    def __init__(self):
        self.n = 0

    def preprocess(self, image):
        import numpy as np
        import torch

        return torch.tensor(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)) + 1.0)

    def embed_images(self, batch):
        import numpy as np

        self.n += len(batch)
        x = batch.numpy()
        return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def colour_encoder():
    """The ``ColourEncoder`` class (call it for as many encoders as a test needs)."""
    return ColourEncoder


def write_downloads(folder, images, wnid="w", fingerprint="fp0"):
    """A ``download_laionet`` folder as later stages read it (download_input.json, one shard
    tar with ``<member>.jpg`` + ``.json``, manifest.parquet) holding ``images`` (row key ->
    PIL image or encoded bytes), every row a success."""
    import io
    import json
    import tarfile

    import pandas as pd

    from laionet.jobs import download as dl

    folder = Path(folder)
    shards = folder / dl.SHARDS / fingerprint
    shards.mkdir(parents=True, exist_ok=True)
    (folder / dl.INPUT_FINGERPRINT).write_text(json.dumps({"fingerprint": fingerprint}))
    rows = []
    with tarfile.open(shards / "00000.tar", "w") as tf:
        for i, (key, im) in enumerate(sorted(images.items())):
            if not isinstance(im, bytes):
                buf = io.BytesIO()
                im.save(buf, format="JPEG")
                im = buf.getvalue()
            member = f"{i:08d}"
            meta = json.dumps({dl.KEY_COL: int(key), "wnid": wnid}).encode()
            for suffix, data in ((".jpg", im), (".json", meta)):
                info = tarfile.TarInfo(member + suffix)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            rows.append({"key": int(key), "wnid": wnid, "status": "success", "shard": "00000",
                         "member": member})
    (shards / "00000_stats.json").write_text("{}")
    pd.DataFrame(rows).to_parquet(folder / dl.MANIFEST)
    return folder


@pytest.fixture
def downloads():
    """``write_downloads``: make a stage-03-style download folder of given images."""
    return write_downloads


class HashTextEncoder:
    """A stand-in text encoder: a seeded unit vector per text (the same text, the same vector);
    ``seen`` records every text it embedded, in order."""

    name = "hash-v1"

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.seen: list = []

    def embed_texts(self, texts, batch_size=64, progress=False):
        import zlib

        import numpy as np

        self.seen += list(texts)
        out = np.stack([np.random.default_rng(zlib.crc32(str(t).encode())).normal(size=self.dim)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def hash_text_encoder():
    """The ``HashTextEncoder`` class."""
    return HashTextEncoder


# ---------------------------------------------------------------- networking removed

# Run inside a new network namespace: bring loopback up (kernels, the demo's image host and the
# tests' hosts use 127.0.0.1), prove a non-loopback address is unreachable, then exec the command.
_NETNS_LAUNCHER = """
import errno, fcntl, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh", b"lo", 0))[:18])[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS: lo up
probe = socket.socket()
probe.settimeout(2)
reached = probe.connect_ex(("192.0.2.1", 80))  # TEST-NET-1: only a real network routes it
if reached != errno.ENETUNREACH:
    sys.exit(f"[netns] networking is not removed: connect gave {reached}")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def offline_prefix() -> tuple[list[str] | None, str]:
    """A command prefix that runs a command with networking removed (``unshare -n`` as root,
    else ``unshare -rn``), loopback up; or (None, why not) where this machine does not allow it."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("unshare"):
        return None, "no unshare(1) on this machine"
    for flags in (["-n"], ["-rn"]):
        cmd = ["unshare", *flags, sys.executable, "-c", _NETNS_LAUNCHER]
        try:
            r = subprocess.run([*cmd, "true"], capture_output=True, text=True, timeout=30,
                               check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
            continue
        if r.returncode == 0:
            return cmd, ""
        why = (r.stderr or r.stdout).strip()
    return None, f"cannot remove networking here (unshare -n / -rn: {why})"


# ---------------------------------------------------------------- the tiny profile, run once

def _first_on_any_worker(request, tmp_path_factory, name: str) -> None:
    """Under ``--dist loadgroup`` a session fixture's tests share one worker, so it runs once in
    all; a second worker starting it means the grouping failed (pytest-xdist 3.8 on pytest 9.2
    drops the groups silently, pytest-xdist#1386): say so instead of paying for it twice."""
    if not getattr(request.config.option, "loadgroup", False):
        return
    flag = tmp_path_factory.getbasetemp().parent / f"{name}.started"
    try:
        flag.touch(exist_ok=False)
    except FileExistsError:
        pytest.fail(f"{name} started on a second xdist worker: --dist loadgroup did not group its "
                    "tests (pytest-xdist#1386: use the lock's pytest, not 9.2)")


@pytest.fixture(scope="session")
def tiny_run(request, tmp_path_factory):
    """Every notebook of the ``tiny`` profile through the real runner, once per session, in a
    scratch project (symlinks to notebooks/, profiles/ and pyproject.toml): (exit code, folder).
    Shared by the notebook smoke tests, the report tests and the browser test;
    networking removed where the machine allows it."""
    import subprocess
    import sys

    from laionet.pipeline import runner

    _first_on_any_worker(request, tmp_path_factory, "tiny_run")
    scratch = tmp_path_factory.mktemp("tiny_project")
    for name in ("notebooks", "profiles", "pyproject.toml"):
        (scratch / name).symlink_to(ROOT / name)
    offline, _ = offline_prefix()
    if offline:  # as run_all.sh starts it, with networking removed (issue 13: stages run offline)
        cmd = [*offline, sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "tiny"]
        rc = subprocess.run(cmd, cwd=scratch, env=dict(os.environ, LAIONET_ROOT=str(scratch)),
                            check=False).returncode
        return rc, scratch
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAIONET_ROOT", str(scratch))
        return runner.main(["run", "--profile", "tiny"]), scratch


# ---------------------------------------------------------------- the rehearsal, run once

@pytest.fixture(scope="session")
def rehearsal_run(request, tmp_path_factory):
    """``profiles/rehearsal.yaml`` (full + real assets) through the real runner, once per session,
    in a scratch project, its photos served on 127.0.0.1 while it runs: (exit code, folder).
    Skips without the reference assets."""
    from laionet.demo import rehearsal
    from laionet.pipeline import runner
    from laionet.util.paths import project_root

    if not (REFERENCE / "coco-mini").is_dir():
        pytest.skip(f"real reference assets not found at {REFERENCE} (../shared/reference or "
                    "$LAIONET_REFERENCE)")
    _first_on_any_worker(request, tmp_path_factory, "rehearsal_run")
    root = tmp_path_factory.mktemp("rehearsal")
    real = project_root()
    for name in ("notebooks", "profiles", "pyproject.toml"):
        os.symlink(real / name, root / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAIONET_ROOT", str(root))
        rehearsal.build(rehearsal.DEFAULT_OUT, port=free_port(), pad=300, focus="coco")
        with rehearsal.serve(rehearsal.DEFAULT_OUT):
            return runner.main(["run", "--profile", "rehearsal"]), root


# ---------------------------------------------------------------- where the time went

def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup + call + teardown summed over its tests, on whichever worker
    ran them): where the suite's time goes, printed after every run."""
    from collections import defaultdict

    per_file: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) in ("setup", "call", "teardown") and hasattr(r, "duration"):
                per_file[r.nodeid.split("::")[0]] += r.duration
    if not per_file:
        return
    terminalreporter.section("seconds per test file")
    for name, secs in sorted(per_file.items(), key=lambda kv: -kv[1])[:15]:
        terminalreporter.write_line(f"{secs:8.1f}  {name}")
    terminalreporter.write_line(f"{sum(per_file.values()):8.1f}  all {len(per_file)} files "
                                "(summed; the workers ran in parallel)")
