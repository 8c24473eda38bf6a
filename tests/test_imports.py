"""The import rules of the tree, checked over the parsed imports of every module (no import is run):

- no import cycle among the project's modules (lazy imports inside functions count: they are cycles
  waiting for a caller; imports under `if TYPE_CHECKING:` do not);
- library below, the command line above: no library module (dts/ but dts.cli and dts.__main__) imports
  `celery_app`, a top-level script or a module of the CLI layer (dts.cli: the `dts` command and its
  sub-commands); nothing imports a top-level script. Only the CLI layer makes apps from what it parsed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

SCRIPTS = {"celery_app", "dispatch", "scale", "load_test"}  # this repository's top-level files: imported by nothing


def in_cli_layer(module: str) -> bool:
    """The command line: dts.cli and its modules (one per command), `python -m dts`, the top-level scripts."""
    return module in SCRIPTS or module in ("dts.cli", "dts.__main__") or module.startswith("dts.cli.")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the product: the top-level scripts and the dts package."""
    files = [*root.glob("*.py"), *(root / "dts").rglob("*.py")]
    return {module_name(root, path): path for path in files}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` (module `name`) imports, anywhere in it but under `if TYPE_CHECKING:`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .mod import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from dts import k8s` names the module dts.k8s; else names in `base`
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {module for module in found if module in known and module != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the modules around it (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """'library -> CLI layer' and 'anything -> script' imports, one line each."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target in SCRIPTS:
                bad.append(f"{module} imports the script {target}")
            elif in_cli_layer(target) and not in_cli_layer(module):
                bad.append(f"library module {module} imports the CLI module {target}")
    return bad


def test_the_tree_has_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_library_modules_do_not_import_the_entry_point_layer():
    assert layering_violations(import_graph(ROOT)) == []


def test_the_graph_sees_the_project_modules():
    graph = import_graph(ROOT)
    assert {"celery_app", "dispatch", "scale", "dts.config", "dts.naming", "dts.cli.main", "dts.app"} <= set(graph)
    assert "dts.naming" in graph["dts.cli.worker"]  # a plain `from dts.naming import ...`
    assert "dts.app" in graph["dts.cli.dispatch"]  # a lazy import inside a function counts


# --------------------------------------------------------------------------- the checks catch what they should


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"dts/__init__.py": "", "dts/a.py": "from dts.b import x\n", "dts/b.py": "x = 1\n"}, []),
        (
            {"dts/__init__.py": "", "dts/a.py": "from dts.b import x\n", "dts/b.py": "def f():\n    import dts.a\n"},
            [["dts.a", "dts.b"]],
        ),
        (  # `from dts import b` names the module dts.b
            {"dts/__init__.py": "", "dts/a.py": "from dts import b\n", "dts/b.py": "from dts.a import y\n"},
            [["dts.a", "dts.b"]],
        ),
        (  # a package whose submodule imports the package back
            {
                "dts/__init__.py": "",
                "dts/p/__init__.py": "from dts.p.m import x\n",
                "dts/p/m.py": "from dts.p import y\n",
            },
            [["dts.p", "dts.p.m"]],
        ),
        (  # type-only imports are not cycles
            {
                "dts/__init__.py": "",
                "dts/a.py": "from dts.b import x\n",
                "dts/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dts.a import y\n",
            },
            [],
        ),
    ],
)
def test_cycles_are_found(tmp_path, files, expected):
    assert cycles(import_graph(write_tree(tmp_path, files))) == expected


def test_a_library_module_importing_celery_app_or_a_cli_module_is_reported(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "celery_app.py": "from dts.lib import x\n",
            "scale.py": "from dts.cli import Parser\nfrom dts.cli.pools import main\n",
            "dts/__init__.py": "",
            "dts/cli/__init__.py": "",
            "dts/cli/pools.py": "from dts.cli import Parser\nfrom dts.lib import x\n",
            "dts/lib.py": "def make():\n    from celery_app import app\n",
            "dts/other.py": "from dts.cli import run_main\nimport dispatch\n",
            "dts/third.py": "from dts.cli.pools import run\n",
            "dispatch.py": "",
        },
    )
    assert layering_violations(import_graph(root)) == [
        "dts.lib imports the script celery_app",
        "dts.other imports the script dispatch",
        "library module dts.other imports the CLI module dts.cli",
        "library module dts.third imports the CLI module dts.cli.pools",
    ]


# --------------------------------------------------------------------------- names a newcomer cannot confuse


def base_name_clashes(root: Path) -> dict[str, list[str]]:
    """Base names (a module's last part, a package's folder name) that more than one module or package under
    dts/ has, with the modules: `dts.status` beside `dts.reports.status` is two places a newcomer mixes up."""
    seen: dict[str, list[str]] = {}
    for name in project_modules(root):
        if name.startswith("dts.") and not name.endswith("__main__"):
            seen.setdefault(name.rsplit(".", 1)[1], []).append(name)
    return {base: sorted(names) for base, names in seen.items() if len(names) > 1}


def test_no_two_modules_under_dts_share_a_base_name():
    assert base_name_clashes(ROOT) == {}


def test_a_shared_base_name_is_reported(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "dts/__init__.py": "",
            "dts/status.py": "",
            "dts/reports/__init__.py": "",
            "dts/reports/status.py": "",
            "dts/config/__init__.py": "",
            "dts/cli/__init__.py": "",
            "dts/cli/config.py": "",
            "dts/cli/dispatch.py": "",
        },
    )
    assert base_name_clashes(root) == {
        "config": ["dts.cli.config", "dts.config"],
        "status": ["dts.reports.status", "dts.status"],
    }
