"""A killed run loses no image and leaves nothing running (issue 13, item 1).

Real processes throughout: the runner (``python -m laionet.pipeline.runner run --only 03``) in a session
of its own, as ``setsid ./run_all.sh`` starts it, on a tiny demo world in a scratch project.
Stage 03 downloads a LAIONet table of the test's own: every other row from the demo's loopback
host (inside the kernel), the others from a slow loopback host of the test (0.2 s an image), so
a shard of 20 rows takes about two seconds and a signal lands inside one. Before the fix, a
SIGKILL of the runner's group left img2dataset's worker running: once the kernel (and its host)
was gone it failed the rest of its shard with "Connection refused", wrote the shard's stats,
and the resumed run kept those rows as failed.

Every process the runner starts inherits a marker in its environment, so the test finds them
all wherever they went (a kernel's own session, a download's own process group, reparented).
Each runner run is bounded in time, and the test kills whatever it left before moving on.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from laionet.jobs import download as dl
from laionet.pipeline.stage import read_manifest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")

N_ROWS = 60
SHARD = 20
SLOW_S = 0.2        # seconds per image on the test's slow host
RUN_LIMIT_S = 240   # any one runner run
GONE_WITHIN_S = 5.0
CONNECTION_ERRORS = ("connection_refused", "connection_broken")  # what a host gone away gives
WORKER = "multiprocessing.spawn"  # command line of img2dataset's pool workers and logger


# ------------------------------------------------------------------------------ processes
def _tagged(tag: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries the marker."""
    marker = f"LAIONET_TEST_TAG={tag}".encode()
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if marker in (p / "environ").read_bytes().split(b"\0"):
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(p.name)] = cmd[:120]
        except OSError:
            pass  # gone meanwhile, or a zombie
    return found


def _listening() -> set[int]:
    """Socket inodes in the LISTEN state (TCP, IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A":
                inodes.add(int(cols[9]))
    return inodes


def _sockets_of(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            target = os.readlink(fd.path)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


class Run:
    """One command in its own session (the runner, as ``setsid ./run_all.sh`` starts it); watches
    every process it starts and the sockets they listen on."""

    def __init__(self, project: Path, log: Path, args: list[str]):
        self.tag = uuid.uuid4().hex
        self.log_path = log
        env = dict(os.environ, LAIONET_ROOT=str(project), LAIONET_TEST_TAG=self.tag,
                   NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1")
        self.procs: dict[int, str] = {}
        self.sockets: set[int] = set()
        self._log = open(log, "wb")  # noqa: SIM115 - closed by close()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(args, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._sample, daemon=True)
        self._watch.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = _tagged(self.tag)
            self.procs.update(now)
            listening = _listening()
            for pid in now:
                self.sockets |= _sockets_of(pid) & listening
            time.sleep(0.2)  # a look costs ~10 ms of CPU (every /proc/*/environ): 5 a second

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait_for_stats(self, out: Path, n: int) -> int:
        """Wait until ``n`` shards are finished (while the runner still runs)."""
        while time.monotonic() - self.t0 < RUN_LIMIT_S:
            done = _finished_shards(out)
            if done >= n:
                return done
            assert self.proc.poll() is None, f"the runner ended early:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"no {n} finished shards after {RUN_LIMIT_S}s:\n{self.output()}")

    def wait_for_process(self, part: str) -> int:
        """Wait until a process of this run whose command line contains ``part`` runs."""
        while time.monotonic() - self.t0 < RUN_LIMIT_S:
            hits = [pid for pid, cmd in _tagged(self.tag).items() if part in cmd]
            if hits:
                return hits[0]
            assert self.proc.poll() is None, f"the runner ended early:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"no process {part!r} after {RUN_LIMIT_S}s:\n{self.output()}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=max(1.0, RUN_LIMIT_S - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the runner ran past {RUN_LIMIT_S}s:\n{self.output()}") from None

    def leftovers(self) -> tuple[float, dict[int, str], set[int]]:
        """After the runner exited: (seconds until everything was gone, processes and listening
        sockets still there after GONE_WITHIN_S)."""
        t0 = time.monotonic()
        while True:
            procs, socks = _tagged(self.tag), self.sockets & _listening()
            waited = time.monotonic() - t0
            if (not procs and not socks) or waited > GONE_WITHIN_S:
                self._stop.set()
                return waited, procs, socks
            time.sleep(0.1)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop whatever this run left (its processes only, by pid)."""
        self._stop.set()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in _tagged(self.tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def _receives(pid: int, sig: int) -> bool:
    """Whether process ``pid`` neither ignores nor blocks ``sig`` (/proc/<pid>/status masks)."""
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    bit = 1 << (sig - 1)
    return not (int(status["SigIgn"], 16) & bit or int(status["SigBlk"], 16) & bit)


def _finished_shards(out: Path) -> int:
    return len(list(out.glob(f"{dl.SHARDS}/*/*_stats.json")))


def _assert_nothing_left(run: Run, when: str) -> float:
    waited, procs, socks = run.leftovers()
    assert not procs, f"{when}: processes still running {GONE_WITHIN_S}s after the runner: {procs}"
    assert not socks, f"{when}: sockets still listening {GONE_WITHIN_S}s after the runner: {socks}"
    return waited


# ------------------------------------------------------------------------------ the world
class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(SLOW_S)
        super().do_GET()


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client killed mid-request (the point of these tests): a broken pipe, no news


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project with a tiny demo world (no models), the slow host, the LAIONet table."""
    from laionet.demo import build_world
    from laionet.demo.formats import DEMO_URL_PREFIX

    scratch = tmp_path_factory.mktemp("kill_project")
    for name in ("notebooks", "profiles", "pyproject.toml"):
        (scratch / name).symlink_to(ROOT / name)
    world = build_world(scratch / "runs" / "tiny" / "00_demo_world" / "world", "tiny", 0,
                        train_models=False)
    handler = functools.partial(_SlowHandler, directory=str(world.http))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    slow = f"http://127.0.0.1:{server.server_address[1]}/"
    parts = sorted(world.laion.glob("part-*.parquet"))
    urls = pd.concat([pd.read_parquet(p, columns=["URL"]) for p in parts],
                     ignore_index=True)["URL"].head(N_ROWS)
    assert len(urls) == N_ROWS and urls.str.startswith(DEMO_URL_PREFIX).all()
    table = pd.DataFrame({
        "key": range(N_ROWS), "wnid": [f"n0000000{i % 3}" for i in range(N_ROWS)],
        "URL": [u if i % 2 == 0 else slow + u[len(DEMO_URL_PREFIX):] for i, u in enumerate(urls)]})
    path = scratch / "laionet_test.parquet"
    table.to_parquet(path)
    yield scratch, path
    server.shutdown()
    server.server_close()


def _run(project, name: str) -> tuple[Run, Path]:
    """The runner on stage 03 alone, our table, one worker of one thread, its own out_dir."""
    scratch, table = project
    out = scratch / "runs" / name
    args = [sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "tiny", "--only", "03"]
    for k, v in (("laionet_path", table), ("out_dir", out), ("processes_count", 1),
                 ("thread_count", 1), ("number_sample_per_shard", SHARD)):
        args += ["-p", f"03.{k}", str(v)]
    return Run(scratch, scratch / f"{name}.log", args), out


@pytest.fixture(scope="module")
def reference(project):
    """An uninterrupted run: its manifest, and what it left after its normal end."""
    run, out = _run(project, "uninterrupted")
    try:
        rc = run.wait()
        assert rc == 0, run.output()
        waited = _assert_nothing_left(run, "normal end")
        return pd.read_parquet(out / dl.MANIFEST), run, waited
    finally:
        run.close()


# ------------------------------------------------------------------------------ tests
@pytest.mark.slow
def test_a_normal_end_leaves_no_process_and_no_socket(reference):
    man, run, waited = reference
    print(f"normal end: everything gone {waited:.1f}s after the runner")
    kinds = set(run.procs.values())
    assert any("laionet.jobs.processes" in c for c in kinds), f"the kernel is tied to the runner: {kinds}"
    assert any("_img2dataset_main" in c for c in kinds), kinds
    assert len(run.sockets) >= 5, "the watcher saw the kernel's listening sockets"
    assert len(man) == N_ROWS and man["key"].is_unique
    assert not man["error_kind"].isin(CONNECTION_ERRORS + (dl.NOT_ATTEMPTED,)).any()


@pytest.mark.slow
def test_sigkill_of_the_runner_group_mid_download_loses_no_image(project, reference):
    expected, _, _ = reference
    run, out = _run(project, "killed")
    try:
        seen = run.wait_for_stats(out, 1)
        run.signal_group(signal.SIGKILL)
        assert seen < N_ROWS // SHARD, "killed in the middle of the download"
        run.wait()
        waited = _assert_nothing_left(run, "SIGKILL of the group")
        print(f"killed with {seen} finished shard(s); everything gone after {waited:.1f}s")
    finally:
        run.close()
    assert read_manifest(out)["status"] == "running"  # what the rerun resumes
    resumed, _ = _run(project, "killed")
    try:
        assert resumed.wait() == 0, resumed.output()
        _assert_nothing_left(resumed, "the resumed run's normal end")
    finally:
        resumed.close()
    man = pd.read_parquet(out / dl.MANIFEST)
    assert man["key"].is_unique and sorted(man["key"]) == list(range(N_ROWS))
    lost = man[man["error_kind"].isin(CONNECTION_ERRORS)]
    assert lost.empty, f"{len(lost)} row(s) lost to the kill:\n{lost}"
    pd.testing.assert_frame_equal(man, expected)  # row for row the uninterrupted run's
    again, _ = _run(project, "killed")
    try:
        assert again.wait() == 0
        assert "up to date" in again.output()
    finally:
        again.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig, rc, said", [(signal.SIGINT, 130, "interrupted;"),
                                           (signal.SIGTERM, 143, "interrupted (SIGTERM);")],
                         ids=["ctrl-c", "sigterm"])
def test_an_interrupt_stops_everything_in_one_line(project, sig, rc, said):
    run, out = _run(project, f"signal-{sig.name}")
    try:
        run.wait_for_process(WORKER)  # img2dataset's pool is downloading
        kernel = run.wait_for_process("laionet.jobs.processes")
        for pid in (run.proc.pid, kernel):  # a terminal's disposition, however pytest started
            assert _receives(pid, sig), f"process {pid} ignores or blocks {sig.name}"
        run.signal_group(sig)
        assert run.wait() == rc, run.output()
        _assert_nothing_left(run, sig.name)
        text = run.output()
    finally:
        run.close()
    # cut short: the download stopped before its last shard (N_ROWS / SHARD of them)
    assert _finished_shards(out) < N_ROWS // SHARD, text
    after = text[text.index("[run_all] 03_download: profile="):].splitlines()[1:]
    assert "Traceback" not in text, text
    assert any(said in line and "rerun the same command to resume" in line for line in after), text
    assert len([line for line in after if line.strip()]) <= 3, text  # the kernel's warning + ours


@pytest.mark.slow
def test_a_failed_download_leaves_no_process(project):
    """img2dataset dies under its pool (as the out-of-memory killer would kill it): the stage
    fails saying so, and its orphaned pool worker and logger process are gone too."""
    run, out = _run(project, "failed")
    try:
        run.wait_for_process(WORKER)
        os.kill(run.wait_for_process("_img2dataset_main"), signal.SIGKILL)
        assert run.wait() == 1, run.output()
        _assert_nothing_left(run, "failure")
        text = run.output()
    finally:
        run.close()
    assert "FAILED" in text and "img2dataset was killed by signal 9" in text, text
    assert read_manifest(out)["status"] == "failed"


_DOWNLOAD = """
import sys
import pandas as pd
from laionet.jobs import download as dl
dl.download_laionet(pd.read_parquet(sys.argv[1]), sys.argv[2], serve_root=sys.argv[3],
                    processes_count=1, thread_count=1, number_sample_per_shard=int(sys.argv[4]),
                    resize_only_if_bigger=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["interrupt", "sigkill"])
def test_the_download_stops_with_the_process_that_runs_it(project, how):
    """``download_laionet`` outside the runner (a JupyterLab kernel): an interrupt (SIGINT to the
    kernel's group) stops img2dataset at once; a SIGKILL of the calling process alone (the
    out-of-memory killer) takes img2dataset's group with it (its tether)."""
    scratch, table = project
    http = scratch / "runs" / "tiny" / "00_demo_world" / "world" / "http"
    run = Run(scratch, scratch / f"direct-{how}.log",
              [sys.executable, "-c", _DOWNLOAD, str(table), str(scratch / "runs" / f"direct-{how}"),
               str(http), str(SHARD)])
    try:
        run.wait_for_process(WORKER)
        if how == "interrupt":
            assert _receives(run.proc.pid, signal.SIGINT), "the child ignores or blocks SIGINT"
            run.signal_group(signal.SIGINT)
        else:
            os.kill(run.proc.pid, signal.SIGKILL)
        assert run.wait() != 0
        _assert_nothing_left(run, how)
        text = run.output()
    finally:
        run.close()
    assert _finished_shards(scratch / "runs" / f"direct-{how}") < N_ROWS // SHARD, text
    if how == "interrupt":
        assert "KeyboardInterrupt" in text, text


# ------------------------------------------------------------------------------ stages 01 and 02
# A real SIGKILL of the runner's group in the middle of stage 01's matching (some parts have
# their done marker, not all), the rerun killed again in the middle of stage 02's caption
# embedding (some parts' store shards written, not all), then a rerun to the end: every product
# of 01 and 02 equals an uninterrupted run's row for row, and no finished part is redone.
# The tiny world's two parts are split into four (the smallest data with several parts);
# stage 01 matches one caption per batch in the kernel (n_workers 1), so a part takes long
# enough for a signal to land between two parts. Each project has its own embedding cache.

N_PARTS = 4
PAD_ROWS = 2500  # non-matching captions after each part's rows (see _split_parts)
MATCH_LIMIT_S = 600  # one runner run of 01 and 02 on a loaded machine
TEXT_STORE = "runs/tiny/cache/text_embeddings/laion"
PRODUCTS_01 = ("class_counts.parquet", "lemma_counts.parquet", "summary.json")
PRODUCTS_02 = ("candidates.parquet", "laionet.parquet", "laionet_top50.parquet", "summary.json")


def _split_parts(world_laion: Path, dest: Path) -> str:
    """The world's parts, each cut in two halves: parts 0..3 (their own row keys). Each half is
    followed by PAD_ROWS captions that match nothing ("-": no lemma in it), so that matching a
    part one row at a time takes about a second even on an idle machine: a kill after the first
    finished part lands before the last one, however loaded the machine (a bare half took ~0.1 s,
    and a busy test machine once saw all four finish between two looks)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest.mkdir()
    n = 0
    for src in sorted(world_laion.glob("part-*.parquet")):
        t = pq.read_table(src)
        half = t.num_rows // 2
        for piece in (t.slice(0, half), t.slice(half)):
            pad = piece.take(np.arange(PAD_ROWS) % piece.num_rows)
            pad = pad.set_column(pad.schema.get_field_index("TEXT"), "TEXT",
                                 pa.array(["-"] * PAD_ROWS, pa.string()))
            pad = pad.set_column(pad.schema.get_field_index("SAMPLE_ID"), "SAMPLE_ID",
                                 pa.array(1e9 + n * PAD_ROWS + np.arange(PAD_ROWS), pa.float64()))
            pq.write_table(pa.concat_tables([piece, pad]),
                           dest / f"part-{n:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36"
                                  "-c000.snappy.parquet")
            n += 1
    assert n == N_PARTS
    return str(dest / "part-*.parquet")


def _new_project(scratch: Path, name: str) -> Path:
    """A project of its own (runs/, cache) on the module's demo world."""
    proj = scratch / name
    (proj / "runs" / "tiny").mkdir(parents=True)
    for item in ("notebooks", "profiles", "pyproject.toml"):
        (proj / item).symlink_to(ROOT / item)
    (proj / "runs" / "tiny" / "00_demo_world").symlink_to(scratch / "runs" / "tiny" / "00_demo_world")
    return proj


def _run_01_02(proj: Path, parts: str, name: str, *extra: str) -> Run:
    args = [sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "tiny", "--only", "01,02",
            "-p", "laion_parts", parts, "-p", "01.n_workers", "1", "-p", "01.batch_size", "1",
            *extra]
    return Run(proj, proj / f"{name}.log", args)


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern)))


def _kill_when(run: Run, folder: Path, pattern: str) -> int:
    """SIGKILL the runner's group as soon as one file matching ``pattern`` exists; returns how
    many there are once everything is dead."""
    while _count(folder, pattern) < 1:
        assert run.proc.poll() is None, f"the runner ended early:\n{run.output()}"
        assert time.monotonic() - run.t0 < MATCH_LIMIT_S, f"nothing after {MATCH_LIMIT_S}s"
        time.sleep(0.02)
    run.signal_group(signal.SIGKILL)
    run.proc.wait()
    _assert_nothing_left(run, "SIGKILL of the group")
    return _count(folder, pattern)


def _finish(run: Run) -> str:
    try:
        rc = run.proc.wait(timeout=MATCH_LIMIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the runner ran past {MATCH_LIMIT_S}s:\n{run.output()}") from None
    text = run.output()
    _assert_nothing_left(run, "normal end")
    run.close()
    return rc, text


def _tables(out: Path) -> dict[str, object]:
    """Every data product of a stage folder, comparable across runs (timings left out)."""
    import json

    got = {}
    for p in sorted(out.rglob("*")):
        rel = str(p.relative_to(out))
        if rel.split("/")[0] in ("_stage", "_source") or p.suffix in (".ipynb", ".html", ".log"):
            continue
        if p.suffix == ".parquet":
            got[rel] = pd.read_parquet(p)
        elif p.suffix == ".json" and p.name != "manifest.json":
            data = json.loads(p.read_text())
            if rel.startswith("done/"):
                data["stats"].pop("seconds", None)  # stage 01 times its parts, 02 does not
            got[rel] = data
    return got


def _assert_same(ours: Path, theirs: Path) -> None:
    a, b = _tables(ours), _tables(theirs)
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    for name in a:
        if isinstance(a[name], pd.DataFrame):
            pd.testing.assert_frame_equal(a[name], b[name], obj=name)
        else:
            assert a[name] == b[name], name
    ma, mb = read_manifest(ours), read_manifest(theirs)
    assert ma["status"] == mb["status"] == "done"
    assert ma["params"] == mb["params"] and sorted(ma["products"]) == sorted(mb["products"])


@pytest.fixture(scope="module")
def matching_reference(project):
    """Stages 01 and 02 uninterrupted, on the four parts, in a project of their own."""
    scratch, _ = project
    parts = _split_parts(scratch / "runs" / "tiny" / "00_demo_world" / "world" / "laion",
                         scratch / "parts4")
    proj = _new_project(scratch, "reference_01_02")
    rc, text = _finish(_run_01_02(proj, parts, "reference"))
    assert rc == 0, text
    return proj, parts


@pytest.mark.slow
def test_sigkill_mid_stage_01_then_mid_stage_02_resumes_to_the_same_products(project,
                                                                            matching_reference):
    import re

    from laionet.jobs.embedding_store import EmbeddingStore

    ref, parts = matching_reference
    scratch, _ = project
    proj = _new_project(scratch, "killed_01_02")
    m01, c02 = proj / "runs" / "tiny" / "01_synset_matching", proj / "runs" / "tiny" / "02_caption_filtering"

    first = _run_01_02(proj, parts, "killed-in-01")
    try:
        n_done = _kill_when(first, m01 / "done", "part-*.json")
    finally:
        first.close()
    assert 1 <= n_done < N_PARTS, f"killed in the middle of stage 01 ({n_done} of {N_PARTS} parts)"
    assert read_manifest(m01)["status"] == "running"
    done_before = {p.name: p.stat().st_mtime_ns for p in (m01 / "done").glob("part-*.json")}

    second = _run_01_02(proj, parts, "killed-in-02")
    try:
        n_shards = _kill_when(second, proj / TEXT_STORE, "*/[0-9]*-*.keys.parquet")
    finally:
        second.close()
    assert 1 <= n_shards < N_PARTS, f"killed in the middle of stage 02 ({n_shards} of {N_PARTS})"
    assert read_manifest(m01)["status"] == "done" and read_manifest(c02)["status"] == "running"
    nb01 = (m01 / "01_synset_matching.ipynb").read_text()
    assert f"matched {N_PARTS - n_done} part(s), resumed {n_done}" in nb01
    assert {p.name: p.stat().st_mtime_ns for p in (m01 / "done").glob("part-*.json")
            if p.name in done_before} == done_before  # finished parts were not matched again
    store_dir = next((proj / TEXT_STORE).iterdir())
    parts_02 = len(list((c02 / "done").glob("part-*.json")))  # stage 02's finished parts

    rc, text = _finish(_run_01_02(proj, parts, "resumed"))
    assert rc == 0, text
    assert "01_synset_matching: up to date" in text
    _assert_same(m01, ref / "runs" / "tiny" / "01_synset_matching")
    _assert_same(c02, ref / "runs" / "tiny" / "02_caption_filtering")
    cand = pd.read_parquet(c02 / "candidates.parquet")
    assert cand["key"].is_unique and sorted(set(cand["part"])) == list(range(N_PARTS))
    nb02 = (c02 / "02_caption_filtering.ipynb").read_text()
    said = re.search(r"(\d+) part\(s\) computed, (\d+) resumed", nb02)
    assert said and (int(said.group(1)), int(said.group(2))) == (N_PARTS - parts_02, parts_02), \
        "a finished part of stage 02 was computed again"
    # every candidate's caption is in the store (the killed run's shards included), none missing
    assert len(EmbeddingStore(store_dir, read_json_name(store_dir))) == len(cand)
    # written deterministically: the same LAIONet is the same bytes (stages 03-05 stay current)
    for name in ("laionet.parquet", "candidates.parquet"):
        assert (c02 / name).read_bytes() == (ref / "runs" / "tiny" / "02_caption_filtering" / name).read_bytes()


def read_json_name(store_dir: Path) -> str:
    """The encoder name a store folder was written for (its meta.json)."""
    import json

    return json.loads((store_dir / "meta.json").read_text())["encoder"]


@pytest.mark.slow
def test_an_empty_laionet_fails_stage_02_naming_the_threshold(matching_reference):
    proj, parts = matching_reference
    out = proj / "runs" / "high_threshold"
    rc, text = _finish(Run(proj, proj / "high.log", [
        sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "tiny", "--only", "02",
        "-p", "laion_parts", parts, "-p", "02.threshold", "0.99", "-p", "02.out_dir", str(out)]))
    assert rc == 1, text
    assert "EmptyLAIONet: LAIONet is empty: threshold=0.99 keeps none of the" in text, text
    assert re.search(r"the best similarity seen is 0\.\d{4} \(class n\d{8}\)", text), text
    assert read_manifest(out)["status"] == "failed" and not (out / "laionet.parquet").exists()


def test_the_projects_own_kernel_spec_is_tethered():
    """The python3 spec the environment step installs (``ipykernel install --sys-prefix`` form,
    ``-Xfrozen_modules=off`` before ``-m``) still starts as ``laionet.jobs.processes``."""
    from jupyter_client.kernelspec import KernelSpecManager

    from laionet.jobs.processes import tethered_cmd

    argv = KernelSpecManager().get_kernel_spec("python3").argv
    cmd = tethered_cmd([sys.executable if a in ("python", "python3") else a for a in argv])
    if os.path.realpath(cmd[0]) == os.path.realpath(sys.executable):
        assert "laionet.jobs.processes" in cmd and "ipykernel_launcher" not in cmd, cmd
    assert tethered_cmd([sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f",
                         "c.json"])[3] == "laionet.jobs.processes"
    assert tethered_cmd([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"])[2] == \
        "laionet.jobs.processes"
    assert tethered_cmd(["/other/python", "-m", "ipykernel_launcher"])[2] == "ipykernel_launcher"
