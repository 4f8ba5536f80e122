"""The package's shape: no import cycles between its modules, and a training loop that fits on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "practice", "cli", "experiments")


def import_graph() -> dict[str, set[str]]:
    """module -> the ssltheory modules it imports anywhere in its file (top level or inside a function)."""
    modules = {f"{pkg}.{p.stem}": p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        pkg = name.split(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from .x import y / from . import x
                    bases = [f"{pkg}.{node.module}"] if node.module else [f"{pkg}.{a.name}" for a in node.names]
                elif node.module and node.module.startswith("ssltheory."):
                    mod = node.module.removeprefix("ssltheory.")
                    bases = [mod] + [f"{mod}.{a.name}" for a in node.names]
                else:
                    continue
                deps.update(b for b in bases if b in modules)
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("ssltheory.") for a in node.names
                            if a.name.removeprefix("ssltheory.") in modules)
        graph[name] = deps - {name, f"{pkg}.__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40 and "practice.train" in graph["cli.practice_cmds"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_theory_does_not_import_torch_or_practice():
    for path in (ROOT / "theory").glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "practice" not in import_lines(text), path.name


def import_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith(("import ", "from ")))


def test_the_training_loop_fits_on_a_screen():
    assert len((ROOT / "practice" / "train.py").read_text().splitlines()) <= 200


def test_every_package_folder_is_installed():
    """A non-editable install (``pip install .``) ships every folder with an ``__init__.py`` under its ssltheory name
    (``practice/objectives`` was once left out: the installed package could not import its methods)."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {f"ssltheory.{'.'.join(p.parent.relative_to(ROOT).parts)}" for pkg in PACKAGES
             for p in (ROOT / pkg).rglob("__init__.py")}
    assert found == set(setup["packages"])
    assert all(name.split(".")[1] in PACKAGES and setup["package-dir"][".".join(name.split(".")[:2])]
               == name.split(".")[1] for name in found)
