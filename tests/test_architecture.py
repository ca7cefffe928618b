"""The package's structure: imports of its own modules at module level only (the layers are checked by lint-imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import matgl_hybrid

PACKAGE = Path(matgl_hybrid.__file__).parent


def _nested_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``matgl_hybrid`` module that is not at the top level of the file."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in top:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("matgl_hybrid"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("matgl_hybrid")]
    return found


def test_no_function_level_imports_of_the_package():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue  # the root re-exports lazily, by name
        offenders += [
            f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}" for line, module in _nested_imports(tree)
        ]
    assert not offenders, offenders


def test_the_check_finds_a_function_level_import():
    tree = ast.parse("import os\n\ndef f():\n    from matgl_hybrid.data import load\n    import matgl_hybrid.files\n")
    assert _nested_imports(tree) == [(4, "matgl_hybrid.data"), (5, "matgl_hybrid.files")]


def _dynamic_imports(tree: ast.Module) -> list[int]:
    """Lines that call ``import_module`` or ``__import__`` (a module named in a string, hidden from lint-imports)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in {"import_module", "__import__"}:
                found.append(node.lineno)
    return found


def test_no_module_is_imported_by_a_name_in_a_string():
    """Plugins (commands, prefixed descriptor sets) are entry points; model classes come from a registry."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in _dynamic_imports(ast.parse(path.read_text(), str(path)))
    ]
    assert not offenders, offenders


def test_the_check_finds_an_import_by_name():
    tree = ast.parse("import importlib\nm = importlib.import_module('matgl_hybrid.ssl')\nn = __import__('os')\n")
    assert _dynamic_imports(tree) == [2, 3]
