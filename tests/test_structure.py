"""The package's structure: one registry, the `python -m wppg` entry, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wppg
from wppg import registry
from wppg.agent import agent_class, make_agent
from wppg.algorithms.protocol import Algorithm
from wppg.config import ConfigError

SRC = str(Path(wppg.__file__).resolve().parents[1])


def test_every_registered_algorithm_builds_through_make_agent():
    for name in registry.names():
        entry = registry.get(name)
        agent = make_agent(name, "Pendulum-v1", progress=False)
        assert agent.variant == name and type(agent) is agent_class(name)
        assert agent.trainer.meta["algo"] == entry.algo and isinstance(agent.algorithm, Algorithm)
        assert type(agent.trainer) is entry.trainer_cls
        assert all(getattr(agent.algo_config, k) == v for k, v in entry.fixed.items())


def test_unknown_names_fail_with_the_list():
    with pytest.raises(ConfigError, match="available: wppg, wppg-i"):
        make_agent("td4", "Pendulum-v1")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(registry.get("sac"))


def test_cli_choices_follow_the_registry():
    from wppg import cli

    assert list(cli.ALGO_CHOICES.__args__) == registry.names()


def test_python_dash_m_and_no_import_cycles():
    """`python -m wppg` runs the CLI; the bench backends and the trainer import without a cycle
    (each imported first in a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-m", "wppg", "--help"], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC}, check=True)  # fmt: skip
    assert "usage: wppg <command>" in out.stdout
    code = "import wppg.bench.ray_backend, wppg.trainer, wppg.multiseed, wppg.bench.external"
    subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": SRC}, check=True)


PACKAGE = Path(wppg.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes that run when the module is imported: all but function bodies (imports there run
    at call time, once both modules exist); blocks under `if TYPE_CHECKING:` count."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the wppg modules it imports when it is imported, read statically (module level,
    class bodies and `if TYPE_CHECKING:` blocks alike). Importing `a.b.c` also runs the package
    `a.b`, so that counts as an edge too (but for the root package and the importer's own)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _import_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
        edges: set[str] = set()
        for target in targets:
            while target in files and target != "wppg" and not name.startswith(target + "."):
                if target != name:
                    edges.add(target)
                target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def test_no_import_cycle_among_wppg_modules():
    graph = _import_graph()
    assert "wppg.config" in graph and "wppg.schedule" in graph
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_import_graph_sees_every_kind_of_import():
    """The graph follows `from x import y` of modules, runtime imports and parent packages."""
    graph = _import_graph()
    assert "wppg.config" in graph["wppg.algorithms.protocol"]  # a runtime import
    assert "wppg.algorithms" in graph["wppg.registry"]  # the parent package of wppg.algorithms.ppo
    assert "wppg.checkpoint" in graph["wppg.trainer"]  # `from wppg import checkpoint as ckpt`


ALLOWED_PRIVATE_ACCESS = {
    # stable-baselines3's update counter, which its models expose under no public name.
    ("wppg/bench/external/references.py", "model._n_updates"),
}


def test_no_module_uses_underscore_names_of_another_object():
    """`x._name` only on `self` / `cls`: what modules use of each other is public and typed."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if (rel, ast.unparse(node)) not in ALLOWED_PRIVATE_ACCESS:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "underscore names of another object:\n" + "\n".join(found)
