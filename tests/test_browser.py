"""A real browser: the project's JupyterLab, opened by headless Chromium (Debian's ``chromium``,
driven by playwright), on the tiny run of tests/conftest.py:tiny_run.

- a double-click on ``notebooks/01_synset_matching.py`` opens it as a notebook (cells, the
  parameters cell, rendered markdown) on the kernel "Python 3 (LAIONet)" (run_all.sh's ensure_jupyter);
- its first cells run with ``profile = "tiny"`` typed into the parameters cell, and the output
  says which values came from the tiny profile (laionet.pipeline.stage.open_stage);
- the run's report page, ``figures/tiny/index.html``, opens from the file system: every image
  loads, and its link to an executed notebook works.

Screenshots land in ``runs/tests/browser/`` of the checkout (gitignored). Every process the test
starts (JupyterLab, its kernels, the browser) is stopped, also when it fails. Without chromium
(``./run_all.sh test`` installs it with apt) or playwright the test skips, saying which.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from test_jupyter_setup import ensure_jupyter, missing

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "runs" / "tests" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = "01_synset_matching"
KERNEL_DISPLAY = "Python 3 (LAIONet)"

pytestmark = pytest.mark.slow



def _stop(proc: subprocess.Popen) -> list[str]:
    """Stop ``proc`` and every process below it (kernels run in sessions of their own, so a
    process group is not enough); returns what would not die."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    proc.wait(timeout=5)
    return [f"{p.pid} {p.name()}" for p in alive if p.is_running()]


@pytest.fixture(scope="module")
def lab(tiny_run, tmp_path_factory):
    """JupyterLab of this environment on 127.0.0.1:<free port>, token auth, serving a copy of
    notebooks/ (autosave writes there, never into the checkout), with the tiny run as project."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: `./run_all.sh test` installs Debian's chromium "
                    "(apt-get install chromium); playwright cannot download its own offline")
    rc, scratch = tiny_run
    assert rc == 0, "the tiny run failed"
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copy(ROOT / "jupytext.toml", root / "jupytext.toml")
    env = {**os.environ, "LAIONET_ROOT": str(scratch)}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[var] = str(tmp / var.lower())  # nothing of the user's home, and nothing written there
    problems = missing(Path(sys.prefix))
    if problems and os.environ.get("CI"):
        pytest.fail("./run_all.sh's environment step should have set up JupyterLab in "
                    f"{sys.prefix}: {problems}")
    if problems:  # a developer's environment not (yet) set up: the same files, in a side prefix
        side = tmp / "prefix"
        ensure_jupyter(side)
        env["JUPYTER_CONFIG_PATH"] = str(side / "etc" / "jupyter")
        env["JUPYTER_PATH"] = str(side / "share" / "jupyter")
        print(f"[browser test] {sys.prefix} is not set up ({problems}); using {side}")
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp / 'jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "scratch": scratch, "root": root}
    finally:
        left = _stop(proc)
        log.close()
        assert not left, f"processes that outlived the test: {left}"


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # only this run's screenshots
        old.unlink()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def test_double_click_opens_a_text_notebook_and_runs_it_on_the_tiny_profile(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{lab['url']}/lab?token={lab['token']}")
        listing = page.locator(".jp-DirListing-content")
        listing.locator(".jp-DirListing-item", has_text="notebooks").dblclick()
        item = listing.locator(".jp-DirListing-item", has_text=f"{NOTEBOOK}.py")
        item.dblclick()  # the default viewer, as a user opens a file

        panel = page.locator(".jp-NotebookPanel")
        title = panel.locator(".jp-MarkdownCell .jp-RenderedMarkdown h1").first
        title.wait_for()
        assert "Synset matching" in title.inner_text()  # markdown rendered, not source
        import jupytext  # every cell of the text notebook is a notebook cell (the status bar
        n_cells = len(jupytext.read(ROOT / "notebooks" / f"{NOTEBOOK}.py").cells)  # counts them:
        page.get_by_text(re.compile(rf"^Cell \d+/{n_cells}$")).wait_for()  # cells off screen are
        assert panel.locator(".jp-Cell").count() >= 5  # not in the page)
        news = page.get_by_role("button", name="No")  # "notified about official Jupyter news?"
        if news.count():
            news.first.click()
        params = panel.locator(".jp-CodeCell").first  # the parameters cell, code cell 1
        assert 'profile: str = "demo"' in params.inner_text() and "laion_parts: str" in params.inner_text()
        kernel = page.locator(".jp-KernelName")
        kernel.filter(has_text=KERNEL_DISPLAY).wait_for()
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
        page.screenshot(path=str(SHOTS / "notebook_opened.png"))

        # the user's edit: double-click the word demo, type tiny; run the cell and the next
        line = params.locator(".cm-line", has_text="profile: str").first
        line.get_by_text('"demo"').dblclick()
        page.keyboard.type("tiny")
        assert 'profile: str = "tiny"' in line.inner_text()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Shift+Enter")
        stage_cell = panel.locator(".jp-CodeCell", has_text=f'open_stage("{NOTEBOOK}"')
        output = stage_cell.locator(".jp-OutputArea-output")
        output.filter(has_text="from the parameters cell's defaults").wait_for(timeout=240_000)
        text = "\n".join(output.all_inner_texts())
        assert f"{NOTEBOOK}: parameters of profile 'tiny'" in text
        assert re.search(r"profile += 'tiny' +from cell edit", text), text
        assert re.search(r"n_workers += 1 +from profile tiny: parameters", text), text
        # the stage's folder is the tiny run's: a cell of the user's own, inserted above the
        # selected next one (command mode after Shift+Enter), prints it
        for key in ("a", "Enter"):
            page.keyboard.press(key)
        page.keyboard.type("print(S.out)")
        page.keyboard.press("Shift+Enter")
        mine = panel.locator(".jp-CodeCell", has_text="print(S.out)").locator(".jp-OutputArea-output")
        mine.filter(has_text=str(lab["scratch"] / "runs" / "tiny" / NOTEBOOK)).wait_for()
        stage_cell.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "notebook_ran_tiny.png"))
    except Exception:
        page.screenshot(path=str(SHOTS / "notebook_failure.png"))
        raise
    finally:
        page.close()


def test_the_report_page_opens_from_the_file_system(lab, browser):
    index = lab["scratch"] / "figures" / "tiny" / "index.html"
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    try:
        page.goto(index.as_uri())
        assert "profile 'tiny'" in page.locator("h1").inner_text()
        n_out = page.locator(".out").count()
        assert n_out > 40
        papers = set(page.locator(".out .paper").all_inner_texts())
        assert papers <= {f"B{i}" for i in range(1, 21)} | {"extension"}, papers
        sizes = page.evaluate("""() => Promise.all([...document.images].map(async im => {
            im.loading = 'eager';
            try { await im.decode(); } catch (e) {}
            return [im.getAttribute('src'), im.naturalWidth];
        }))""")
        assert len(sizes) > 20 and all(w > 0 for _, w in sizes), [s for s, w in sizes if not w]
        page.screenshot(path=str(SHOTS / "report_page.png"))
        page.locator("a", has_text="executed notebook (HTML)").first.click()
        page.wait_for_load_state()
        assert page.url.startswith("file://") and page.url.endswith(".html")
        assert page.locator(".jp-Cell").count() > 3  # nbconvert's HTML of an executed notebook
    except Exception:
        page.screenshot(path=str(SHOTS / "report_failure.png"))
        raise
    finally:
        page.close()
