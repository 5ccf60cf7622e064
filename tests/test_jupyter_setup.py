"""run_all.sh's JupyterLab setup (``ensure_jupyter``: ``jupytext-config set-default-viewer`` and
``ipykernel install``) into a scratch environment prefix, read back by JupyterLab's and
jupyter_client's own readers (no server; the browser test opens a real JupyterLab), and the undo
that README "Working in JupyterLab" gives."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"


def ensure_jupyter(prefix: Path, home: Path | None = None) -> str:
    """Run run_all.sh's own ``ensure_jupyter`` (cut out of the script, nothing else of it runs)
    for this interpreter and ``prefix``, with ``home`` as $HOME; its output."""
    script = (ROOT / "run_all.sh").read_text()
    func = re.search(r"^ensure_jupyter\(\) \{.*?^\}$", script, re.DOTALL | re.MULTILINE)
    assert func, "run_all.sh defines ensure_jupyter()"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    return subprocess.run(["bash", "-c", f'{func.group(0)}\nensure_jupyter "$0" "$1"',
                           sys.executable, str(prefix)], capture_output=True, text=True,
                          check=True, env={**env, "HOME": str(home or prefix / "home")}).stdout


def settings(prefix: Path) -> Path:
    return prefix / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"


def missing(prefix: Path) -> list[str]:
    """The files ensure_jupyter has not set up in the environment at ``prefix`` (its own test)."""
    kernel = prefix / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    return [str(path) for path, says in ((settings(prefix), '"python": "Jupytext Notebook"'),
                                         (kernel, '"Python 3 (LAIONet)"'))
            if not (path.is_file() and says in path.read_text())]


def _lab_overrides(prefix, monkeypatch):
    """The default settings JupyterLab's server would give its front end if ``prefix`` were the
    environment it runs in (and no other config directory existed)."""
    import jupyter_core.paths
    from jupyterlab_server.settings_utils import _get_overrides

    monkeypatch.setattr(jupyter_core.paths, "ENV_CONFIG_PATH", [str(prefix / "etc" / "jupyter")])
    monkeypatch.setattr(jupyter_core.paths, "SYSTEM_CONFIG_PATH", [])
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(prefix / "home-jupyter"))  # not the user's ~
    overrides, error = _get_overrides(str(prefix / "app-settings"))
    assert not error
    return overrides


def _kernel(prefix, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    # the first data directory wins: the prefix's kernel, not this environment's own
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(prefix / "home-data"))
    return KernelSpecManager().get_kernel_spec("python3")


def test_python_files_open_as_notebooks_on_the_projects_tethered_kernel(tmp_path, monkeypatch):
    from laionet.jobs.processes import tethered_cmd

    home = tmp_path / "home"
    home.mkdir()
    assert len(missing(tmp_path / "env")) == 2
    assert ensure_jupyter(tmp_path / "env", home) == ""
    assert missing(tmp_path / "env") == []
    # nothing in $HOME (IPython makes its own ~/.ipython whenever it is imported, setup or not)
    assert [p.name for p in home.iterdir()] in ([], [".ipython"])
    tmp_path = tmp_path / "env"
    viewers = _lab_overrides(tmp_path, monkeypatch)[DOCMANAGER]["defaultViewers"]
    assert viewers == {"python": "Jupytext Notebook"}
    spec = _kernel(tmp_path, monkeypatch)
    assert spec.argv[0] == sys.executable and spec.display_name == "Python 3 (LAIONet)"
    # the runner still starts this kernel tied to itself (laionet.jobs.processes)
    assert "laionet.jobs.processes" in tethered_cmd(spec.argv)


def test_setup_is_idempotent_keeps_other_settings_and_undoes(tmp_path, monkeypatch):
    path = settings(tmp_path)
    path.parent.mkdir(parents=True)
    mine = {DOCMANAGER: {"defaultViewers": {"markdown": "Jupytext Notebook"}, "autosave": False},
            "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    path.write_text(json.dumps(mine))
    ensure_jupyter(tmp_path)
    kernel = tmp_path / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    stamp = (path.read_text(), path.stat().st_mtime_ns, kernel.stat().st_mtime_ns)
    ensure_jupyter(tmp_path)
    assert (path.read_text(), path.stat().st_mtime_ns, kernel.stat().st_mtime_ns) == stamp
    got = json.loads(path.read_text())
    assert got[DOCMANAGER] == {"defaultViewers": {"markdown": "Jupytext Notebook",
                                                  "python": "Jupytext Notebook"}, "autosave": False}
    assert got["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}

    # the undo of README "Working in JupyterLab", with this prefix for .venv
    readme = (ROOT / "README.md").read_text()
    for cmd in (("python -m jupytext_config --settings-file .venv/etc/jupyter/labconfig/"
                 "default_setting_overrides.json unset-default-viewer python"),
                "python -m ipykernel install --sys-prefix --name python3"):
        assert cmd in readme, cmd
    subprocess.run([sys.executable, "-m", "jupytext_config", "--settings-file", str(path),
                    "unset-default-viewer", "python"], check=True)
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path),
                    "--name", "python3"], check=True, capture_output=True)
    assert json.loads(path.read_text()) == mine
    assert "python" not in _lab_overrides(tmp_path, monkeypatch)[DOCMANAGER]["defaultViewers"]
    assert _kernel(tmp_path, monkeypatch).display_name == "Python 3 (ipykernel)"
