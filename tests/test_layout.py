"""The package's shape: no import cycles between its modules, the theory below the practice, every package folder
installed, and the layout table of docs/layout.md the tree as it is. (Length is no rule here: a file is as long as its
one job needs; docs/layout.md says so.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "practice", "cli", "experiments")


def module_name(path: Path) -> str:
    """``practice/engine/train.py`` -> ``practice.engine.train``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the ssltheory modules it imports anywhere in its file (top level or inside a function)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from .x import y / from ..x import y / from . import x
                    pkg = ".".join(here[:len(here) - node.level + 1])
                    mod = f"{pkg}.{node.module}" if node.module else pkg
                    bases = [mod] + [f"{mod}.{a.name}" for a in node.names]
                elif node.module and node.module.startswith("ssltheory."):
                    mod = node.module.removeprefix("ssltheory.")
                    bases = [mod] + [f"{mod}.{a.name}" for a in node.names]
                else:
                    continue
                deps.update(b for b in bases if b in modules)
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("ssltheory.") for a in node.names
                            if a.name.removeprefix("ssltheory.") in modules)
        graph[name] = deps - {name} - {".".join(here[:k]) for k in range(1, len(here) + 1)}  # its own packages
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
    assert len(graph) > 40 and "practice.engine.train" in graph["cli.practice_cmds"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_theory_does_not_import_torch_or_practice():
    for path in (ROOT / "theory").rglob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "practice" not in import_lines(text), path.name


def import_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith(("import ", "from ")))


def test_the_layout_table_is_the_tree():
    """docs/layout.md's "Layout" table (the README links it) names every folder of ``practice/`` and, in its row,
    every module in it: a newcomer finds a thing where the table (and the folder's name) says."""
    text = (ROOT / "docs" / "layout.md").read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`practice/"):
            rows[cells[0].strip("`")] = set(re.findall(r"`([\w/]+\.py|[\w]+/)`", cells[1]))
    tree = {}
    for path in sorted((ROOT / "practice").rglob("*.py")):
        if path.name == "__init__.py" or "__pycache__" in path.parts:
            continue
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        top = "/".join(folder.split("/")[:2]) + "/" if folder.count("/") > 2 else folder
        inner = path.relative_to(ROOT / top).as_posix()
        tree.setdefault(top, set()).add(inner.split("/")[0] + "/" if "/" in inner else inner)
    assert rows == tree


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
