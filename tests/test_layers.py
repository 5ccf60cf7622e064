"""The library is layered, one direction, with no import cycle (pyproject.toml [tool.importlinter])."""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    assert "2 kept, 0 broken" in out


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
