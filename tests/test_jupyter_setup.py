"""laionet.pipeline.jupyter_setup: the files it writes into an environment, read back by JupyterLab's and
jupyter_client's own readers (no server; the browser test opens a real JupyterLab)."""

from __future__ import annotations

import json
import sys

from laionet.pipeline import jupyter_setup as js


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


def test_install_makes_python_files_open_as_notebooks_on_this_kernel(tmp_path, monkeypatch):
    assert len(js.check(tmp_path)) == 2
    written = js.install(tmp_path)
    assert set(written) == {js.overrides_file(tmp_path), js.kernel_file(tmp_path)}
    assert js.check(tmp_path) == []
    viewers = _lab_overrides(tmp_path, monkeypatch)[js.DOCMANAGER]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"

    from jupyter_client.kernelspec import KernelSpecManager

    # the first data directory wins: the prefix's kernel, not this environment's own
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "home-data"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable and spec.display_name == "Python 3 (LAIONet)"


def test_install_is_idempotent_and_keeps_other_settings(tmp_path):
    path = js.overrides_file(tmp_path)
    path.parent.mkdir(parents=True)
    mine = {js.DOCMANAGER: {"defaultViewers": {"markdown": "Jupytext Notebook"}, "autosave": False},
            "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    path.write_text(json.dumps(mine))
    js.install(tmp_path)
    stamp = (path.stat().st_mtime_ns, js.kernel_file(tmp_path).stat().st_mtime_ns)
    assert js.install(tmp_path) == []
    assert (path.stat().st_mtime_ns, js.kernel_file(tmp_path).stat().st_mtime_ns) == stamp
    got = json.loads(path.read_text())
    assert got[js.DOCMANAGER] == {"defaultViewers": {"markdown": "Jupytext Notebook",
                                                     "python": "Jupytext Notebook"},
                                  "autosave": False}
    assert got["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}

    js.uninstall(tmp_path)  # undo: only what install added goes
    assert json.loads(path.read_text()) == mine
    assert json.loads(js.kernel_file(tmp_path).read_text())["display_name"] == "Python 3 (ipykernel)"
    assert len(js.check(tmp_path)) == 2


def test_uninstall_removes_a_file_it_alone_wrote(tmp_path, monkeypatch):
    js.install(tmp_path)
    js.uninstall(tmp_path)
    assert not js.overrides_file(tmp_path).exists()
    assert js.DOCMANAGER not in _lab_overrides(tmp_path, monkeypatch)
    assert js.main(["check", "--prefix", str(tmp_path)]) == 1
