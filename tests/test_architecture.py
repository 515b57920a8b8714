"""The layer rules, checked on the package's source (see docs/architecture.md).

- SQL and `sqlite3` live only in `jobctl/store/`.
- A job's state is written only by `transition` in `jobctl/store/database.py`.
- The layer packages (`jobctl/core`, `store`, `engine`, ...) import each other without a cycle.
- No module compares a job's backend name: the `Backend` objects (jobctl/engine/backends.py) decide.

Each rule is a function over a source tree, so that the tests below also run it on a copy with a
violation planted, which it must report.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jobctl"
SQL_WORD = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE)\b")
JOB_UPDATE = re.compile(r"UPDATE\s+jobs\s+SET\s+(?P<assignments>.*?)(?:\s+WHERE\b|$)", re.S)
TRANSITION = ("store/database.py", "transition")  # the one function that may set jobs.state


@functools.lru_cache(maxsize=8)
def modules(root: Path) -> list[tuple[str, ast.Module]]:
    """(path relative to the package, parsed module) for every module of the package."""
    return [
        (path.relative_to(root).as_posix(), ast.parse(path.read_text(), str(path)))
        for path in sorted(root.rglob("*.py"))
    ]


def literal_text(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's replacement fields read `{}`; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(literal_text(v) or "" if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = literal_text(node.left), literal_text(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def strings(tree: ast.Module) -> list[tuple[ast.AST, str, str | None]]:
    """(node, text, enclosing function name) of every string literal, an f-string or a `+` of them as one."""
    found: list[tuple[ast.AST, str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        text = literal_text(node)
        if text is not None:
            found.append((node, text, function))
            return  # the parts of a joined string are not looked at again
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (prose, where words such as DELETE may appear)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def sql_outside_store(root: Path) -> list[str]:
    problems = []
    for rel, tree in modules(root):
        if rel.startswith("store/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlite3" for a in node.names):
                problems.append(f"{rel}:{node.lineno}: imports sqlite3")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
                problems.append(f"{rel}:{node.lineno}: imports from sqlite3")
        prose = docstrings(tree)
        for node, text, _ in strings(tree):
            if id(node) not in prose and SQL_WORD.search(text):
                problems.append(f"{rel}:{getattr(node, 'lineno', '?')}: SQL in a string: {text.strip()[:60]!r}")
    return problems


def state_writes(root: Path) -> list[str]:
    """Every `UPDATE jobs SET` that sets `state` (or a SET list built at run time) outside `transition`."""
    problems = []
    for rel, tree in modules(root):
        for node, text, function in strings(tree):
            for match in JOB_UPDATE.finditer(text):
                if (rel, function) == TRANSITION:
                    continue
                assignments = match.group("assignments")
                if "{}" in assignments or re.search(r"\bstate\s*=", assignments):
                    problems.append(f"{rel}:{getattr(node, 'lineno', '?')}: writes jobs.state: {text.strip()[:60]!r}")
    return problems


BACKEND_PICKERS = ("engine/backends.py", "engine/slurm_sync.py", "store/")  # where a backend is named


def backend_checks(root: Path) -> list[str]:
    """`job.backend == "slurm"` and the like outside the modules that pick or implement a backend."""
    problems = []
    for rel, tree in modules(root):
        if rel.startswith(BACKEND_PICKERS):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            named = any(isinstance(side, ast.Attribute) and side.attr == "backend" for side in sides)
            literal = any(
                literal_text(side) is not None
                or (isinstance(side, (ast.Tuple, ast.Set, ast.List)) and any(literal_text(e) for e in side.elts))
                for side in sides
            )
            if named and literal:
                problems.append(f"{rel}:{node.lineno}: compares a backend name; ask the Backend object instead")
    return problems


def layer_of(rel: str) -> str:
    """The layer package of a module path (`engine/local.py` -> `engine`); top-level modules are their own."""
    return rel.split("/")[0].removesuffix(".py")


def layer_graph(root: Path) -> dict[str, set[str]]:
    """layer -> the layers its modules import (at the top of a module or inside a function alike)."""
    layers = {layer_of(rel) for rel, _ in modules(root)}
    graph: dict[str, set[str]] = {layer: set() for layer in layers}
    for rel, tree in modules(root):
        here = layer_of(rel)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                parts = target.split(".")
                if parts[0] == root.name and len(parts) > 1 and parts[1] in layers and parts[1] != here:
                    graph[here].add(parts[1])
    return graph


def import_cycles(root: Path) -> list[str]:
    graph = layer_graph(root)
    cycles: list[str] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            text = " -> ".join(cycle)
            if not any(set(cycle) == set(c.split(" -> ")) for c in cycles):
                cycles.append(text)
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            walk(nxt, path + [node])
        done.add(node)

    for start in sorted(graph):
        walk(start, [])
    return cycles


# -- the package as it is ---------------------------------------------------------------------------
def test_no_sql_outside_the_store():
    assert sql_outside_store(PACKAGE) == []


def test_only_transition_writes_a_job_state():
    assert state_writes(PACKAGE) == []


def test_the_one_transition_function_is_where_the_rule_looks():
    tree = ast.parse((PACKAGE / TRANSITION[0]).read_text())
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert TRANSITION[1] in functions
    texts = [text for _, text, function in strings(tree) if function == TRANSITION[1]]
    assert any(JOB_UPDATE.search(text) for text in texts)  # the rule guards a real statement


def test_no_backend_named_outside_the_backend_objects():
    assert backend_checks(PACKAGE) == []


def test_no_import_cycle_between_layers():
    graph = layer_graph(PACKAGE)
    assert {"core", "store", "engine", "app", "cli", "backends", "supervisor"} <= set(graph)
    assert import_cycles(PACKAGE) == []


def test_core_and_store_stay_at_the_bottom():
    graph = layer_graph(PACKAGE)
    assert graph["core"] <= {"errors"}
    assert graph["store"] <= {"core", "errors"}


# -- each rule catches a planted violation ------------------------------------------------------------
@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "jobctl"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_a_raw_state_update_is_caught(copy: Path):
    plant(
        copy / "engine/slurm_control.py",
        'def _undo_raw(conn, job_id):\n    conn.execute("UPDATE jobs SET state = ?, reason = NULL WHERE id = ?", ("PENDING", job_id))',
    )
    assert any("engine/slurm_control.py" in p and "writes jobs.state" in p for p in state_writes(copy))
    assert any("engine/slurm_control.py" in p and "SQL in a string" in p for p in sql_outside_store(copy))


def test_a_state_update_inside_the_store_but_outside_transition_is_caught(copy: Path):
    plant(
        copy / "store/jobs.py",
        "def force(conn, job_id, state):\n"
        '    conn.execute(f"UPDATE jobs SET {state} WHERE id = ?", (job_id,))\n'
        '    conn.execute("UPDATE jobs " "SET reason = NULL, state = \'KILLED\' WHERE id = ?", (job_id,))',
    )
    found = [p for p in state_writes(copy) if p.startswith("store/jobs.py")]
    assert len(found) == 2
    assert sql_outside_store(copy) == []  # SQL in the store is fine


def test_sqlite3_outside_the_store_is_caught(copy: Path):
    plant(copy / "app/control.py", "import sqlite3  # noqa: E402")
    plant(copy / "cli/views.py", 'QUERY = "SELECT id FROM jobs"')
    problems = sql_outside_store(copy)
    assert any(p.startswith("app/control.py") and "imports sqlite3" in p for p in problems)
    assert any(p.startswith("cli/views.py") and "SQL in a string" in p for p in problems)


def test_an_import_cycle_is_caught(copy: Path):
    plant(copy / "store/records.py", "def _late():\n    from jobctl.app import session  # noqa: F401")
    cycles = import_cycles(copy)
    assert cycles and any("store" in c and "app" in c for c in cycles)


def test_a_backend_check_by_name_is_caught(copy: Path):
    plant(
        copy / "app/control.py", "def _is_slurm(row):\n    return row.backend == 'slurm' or row.backend in ('local',)"
    )
    assert len([p for p in backend_checks(copy) if p.startswith("app/control.py")]) == 2
