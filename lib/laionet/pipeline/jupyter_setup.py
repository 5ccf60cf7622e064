"""JupyterLab in the project's environment: text notebooks open as notebooks, on its own kernel.

Two files, both inside the environment (``sys.prefix``), nothing in the user's home:

- ``etc/jupyter/labconfig/default_setting_overrides.json``: JupyterLab's default settings for
  this environment (jupyterlab_server reads ``labconfig/default_setting_overrides.json`` from
  every Jupyter config directory). It makes "Jupytext Notebook" the default viewer of Python
  files, the setting Jupytext documents for a double-click ("More on default viewers";
  ``jupytext-config set-default-viewer python`` writes the same setting, but into the user's
  ``~/.jupyter``). A user's own choice in Settings > Document Manager still wins.
- ``share/jupyter/kernels/python3/kernel.json``: the kernel the notebooks name (``python3``),
  written by ipykernel as ``python -m ipykernel install --sys-prefix`` does, so it starts this
  environment's interpreter by absolute path, shown as "Python 3 (LAIONet)".

    python -m laionet.pipeline.jupyter_setup install     # what ./run_all.sh env does (idempotent)
    python -m laionet.pipeline.jupyter_setup check       # says what is missing, exit 1 if anything
    python -m laionet.pipeline.jupyter_setup uninstall   # undo: text files open as text again

A side effect to know: every ``.py`` file then opens as a notebook on a double-click (library
modules too, as one-cell notebooks); right-click > Open With > Editor opens one as text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from laionet.util.files import write_json

DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
VIEWERS = {"python": "Jupytext Notebook"}   # JupyterLab's file type of .py -> jupytext's viewer
KERNEL_NAME = "python3"                     # what every notebook's kernelspec names
KERNEL_DISPLAY = "Python 3 (LAIONet)"


def overrides_file(prefix: str | Path = sys.prefix) -> Path:
    return Path(prefix) / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"


def kernel_file(prefix: str | Path = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise SystemExit(f"{path} is not valid JSON ({exc}); fix or remove it, then rerun") from None
    return data if isinstance(data, dict) else {}


def check(prefix: str | Path = sys.prefix) -> list[str]:
    """What is not set up yet in the environment at ``prefix`` (empty: all of it is). The kernel
    must start the interpreter running this (``sys.executable``): the environment's own."""
    python = sys.executable
    problems = []
    viewers = _read(overrides_file(prefix)).get(DOCMANAGER, {}).get("defaultViewers", {})
    for kind, viewer in VIEWERS.items():
        if viewers.get(kind) != viewer:
            problems.append(f"{overrides_file(prefix)}: {kind} files do not open as {viewer!r}")
    spec = _read(kernel_file(prefix))
    if (spec.get("argv") or [None])[0] != python or spec.get("display_name") != KERNEL_DISPLAY:
        problems.append(f"{kernel_file(prefix)}: kernel {KERNEL_NAME!r} does not start {python} "
                        f"as {KERNEL_DISPLAY!r}")
    return problems


def install(prefix: str | Path = sys.prefix) -> list[Path]:
    """Write what ``check`` finds missing, keeping every other setting of the files; returns
    the files written (none when all was in place)."""
    written = []
    path = overrides_file(prefix)
    data = _read(path)
    viewers = data.setdefault(DOCMANAGER, {}).setdefault("defaultViewers", {})
    if any(viewers.get(k) != v for k, v in VIEWERS.items()):
        viewers.update(VIEWERS)
        written.append(write_json(data, path))
    if any("kernel" in p for p in check(prefix)):
        written.append(_write_kernel(prefix, KERNEL_DISPLAY))
    return written


def uninstall(prefix: str | Path = sys.prefix) -> list[Path]:
    """Undo ``install``: drop the default viewers it set (the file too, when nothing else is
    left in it) and give the kernel back ipykernel's own display name."""
    written = []
    path = overrides_file(prefix)
    data = _read(path)
    viewers = data.get(DOCMANAGER, {}).get("defaultViewers", {})
    if any(viewers.get(k) == v for k, v in VIEWERS.items()):
        for k, v in VIEWERS.items():
            if viewers.get(k) == v:
                del viewers[k]
        if not viewers:
            del data[DOCMANAGER]["defaultViewers"]
        if not data[DOCMANAGER]:
            del data[DOCMANAGER]
        if data:
            written.append(write_json(data, path))
        else:
            path.unlink()
            written.append(path)
    if _read(kernel_file(prefix)).get("display_name") == KERNEL_DISPLAY:
        written.append(_write_kernel(prefix, None))
    return written


def _write_kernel(prefix: str | Path, display_name: str | None) -> Path:
    """``python -m ipykernel install --sys-prefix [--display-name ...]`` (argv: sys.executable)."""
    from ipykernel import kernelspec

    kernelspec.install(kernel_name=KERNEL_NAME, display_name=display_name, prefix=str(prefix))
    return kernel_file(prefix)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laionet.pipeline.jupyter_setup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("install", "check", "uninstall"))
    ap.add_argument("--prefix", default=sys.prefix, help="the environment (default: this one)")
    ap.add_argument("--quiet", action="store_true", help="say nothing when nothing changed")
    args = ap.parse_args(argv)
    if args.action == "check":
        problems = check(args.prefix)
        print("\n".join(problems) or f"JupyterLab in {args.prefix}: text notebooks open as "
                                       f"notebooks, kernel {KERNEL_DISPLAY!r}")
        return 1 if problems else 0
    written = (install if args.action == "install" else uninstall)(args.prefix)
    for path in written:
        print(f"[jupyter_setup] {args.action}: {'updated' if path.exists() else 'removed'} {path}")
    if not written and not args.quiet:
        print(f"[jupyter_setup] {args.action}: nothing to do in {args.prefix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
