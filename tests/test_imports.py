"""The house's import graph (``ast`` over every module of ``mmkp_helpers``, imports inside functions
included): no circle, the directions of the house plan, and rooms that one sitting can read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmkp_helpers"
#: A module that grows past this many lines becomes a package of modules (the house plan).
MAX_LINES = 620
#: (importer prefix, imported prefix) pairs the house plan forbids: data flows one way.
FORBIDDEN = [
    ("mmkp_helpers.training", "mmkp_helpers.teacher"),     # training never imports the teacher
    ("mmkp_helpers.collate", "mmkp_helpers.teacher"),
    ("mmkp_helpers.dynamic_cot", "mmkp_helpers.teacher"),
    ("mmkp_helpers.teacher", "mmkp_helpers.training"),     # the teacher produces data, it does not train
    ("mmkp_helpers.teacher", "mmkp_helpers.modeling"),
    ("mmkp_helpers.data", "mmkp_helpers.prompts"),         # data knows nothing of prompts
    ("mmkp_helpers.cmkp", "mmkp_helpers.data"),            # one direction: data -> cmkp
    ("mmkp_helpers.metrics", "mmkp_helpers.modeling"),     # metrics knows nothing of models
    ("mmkp_helpers.metrics", "mmkp_helpers.inference"),
    ("mmkp_helpers.metrics", "mmkp_helpers.training"),
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from every import statement of its source."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import mod` imports the module mod; `from mod import name` imports mod
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # a name inside a module: the module
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_the_graph_is_read():
    graph = import_graph()
    assert len(graph) > 40
    assert "mmkp_helpers.cmkp" in graph["mmkp_helpers.data"]
    assert "mmkp_helpers.teacher.run" in graph["mmkp_helpers.teacher.batch"]
    assert "mmkp_helpers.data" in graph["mmkp_helpers.teacher.run"]  # `from ..data import Example`


def test_no_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.sub import c\n")  # inside a function still counts
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import y\nimport os\n")
    (pkg / "d.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


@pytest.mark.parametrize("importer, imported", FORBIDDEN)
def test_house_directions(importer, imported):
    graph = import_graph()
    wrong = sorted((m, t) for m, targets in graph.items() if m == importer or m.startswith(importer + ".")
                   for t in targets if t == imported or t.startswith(imported + "."))
    assert not wrong, wrong


def test_modules_fit_one_sitting():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these into packages of modules: {long}"
