"""The library is layered, one direction, with no import cycle (pyproject.toml [tool.importlinter])."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def test_no_function_level_imports_of_the_library_hide_a_cycle():
    """Imports of laionet modules sit at the top of each module (a local import could hide a
    cycle from the contracts above, which see it anyway; it also hides a module's layer)."""
    import ast

    local = []
    for f in sorted((ROOT / "lib" / "laionet").rglob("*.py")):
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        local += [f"{f.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and id(n) not in top
                  and (n.module or "").startswith("laionet")]
    assert not local, f"function-level imports of laionet modules: {local}"
