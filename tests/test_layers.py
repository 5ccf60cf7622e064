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


def test_the_map_of_the_paper_names_functions_that_exist():
    """docs/DEVELOPING.md maps each rule of the paper (A1-A21) to modules and functions: every
    `layer.module.name` it cites must exist, so the map cannot rot silently."""
    import importlib
    import re

    text = (ROOT / "docs" / "DEVELOPING.md").read_text()
    section = text.split("## Where each rule of the paper lives")[1].split("\n## ")[0]
    cited = set(re.findall(r"`((?:sources|models|method|jobs|plots|paper)(?:\.\w+)+)", section))
    assert len(cited) > 40
    missing = []
    for ref in sorted(cited):
        parts = ref.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module prefix
            try:
                obj = importlib.import_module("laionet." + ".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                missing.append(ref)
            break
        else:
            missing.append(ref)
    assert not missing, f"DEVELOPING.md cites names that do not exist: {missing}"
