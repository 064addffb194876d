"""The house rules that keep physnn readable: each module imports only modules below it,
no file over 600 lines, no function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "phys"

#: Layers from the bottom up; a module may import its own layer and those below it.
#: A module belongs to the first entry whose name is the module or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("phys.device", "phys.flops", "phys.atomic", "phys.options", "phys.checksums",
     "phys.threads"),
    ("phys.registry", "phys.download"),
    ("phys.simulators", "phys.quantum.statevector", "phys.quantum.circuits",
     "phys.quantum.unitary", "phys.data"),
    ("phys.devices", "phys.recording"),
    ("phys.testing", "phys.nn", "phys.layers"),
    ("phys.quantum.layers", "phys.quantum.creep", "phys.quantum.swap"),
    ("phys.train", "phys.devices.recorded"),  # recorded: fits a surrogate twin
    ("phys.quantum.study", "phys.quantum", "phys.experiment"),
    ("phys.report",),
    ("phys.runs",),
    ("phys.load", "phys.compare", "phys.sweep"),
    ("phys.cli", "phys.cli_twin", "phys.console", "phys.__main__"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching prefix, layer)
    for level, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[0]:
                    best = (len(name), level)
    return None if best is None else best[1]


def _imports(tree: ast.AST, module: str) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("phys")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("phys"):
            if node.module == "phys":  # from phys import atomic: the submodule
                found |= {f"phys.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return {name for name in found if name != module}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def upward_imports() -> list[str]:
    """``"importer (layer) -> imported (layer)"`` for every import of a higher layer."""
    found = []
    for path in _sources():
        module = _module_name(path)
        if module == "phys":  # the package itself loads its names lazily
            continue
        mine = layer_of(module)
        for name in sorted(_imports(ast.parse(path.read_text()), module)):
            theirs = layer_of(name)
            if name != "phys" and theirs is not None and mine is not None and theirs > mine:
                found.append(f"{module} ({mine}) -> {name} ({theirs})")
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = [_module_name(p) for p in _sources()
                if _module_name(p) != "phys" and layer_of(_module_name(p)) is None]
    assert unplaced == []


def test_no_module_imports_a_module_above_it() -> None:
    assert upward_imports() == []


def test_the_contract_knows_no_driver() -> None:
    tree = ast.parse((PACKAGE / "device.py").read_text())
    assert {n for n in _imports(tree, "phys.device") if n.startswith("phys.devices")} == set()


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_file_and_function_lengths(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 600, "over 600 lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60]
    assert long == []
