"""The package's imports go one way: no cycles, and each part imports only the parts
below it.

Read from the source with `ast`, every import counts: at module level, inside
functions and under `if TYPE_CHECKING:`. A lazy import inside a function hides a
cycle from Python until the function runs; it does not hide it from this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "mirrorfleet"

# Parts from the bottom up: a module may import its own part and any part of a lower
# rank, never a part of the same rank or higher (cli, testing and checks are the tops).
RANKS = {
    "mirrorfleet": 0,  # the package's __init__ (its __version__)
    "mirrorfleet.errors": 0,
    "mirrorfleet.config": 1,
    "mirrorfleet.web": 1,  # HTTP(S) reads under one TLS policy
    "mirrorfleet.tree": 2,
    "mirrorfleet.content": 3,
    "mirrorfleet.notify": 3,
    "mirrorfleet.zone": 4,
    "mirrorfleet.probe": 5,
    "mirrorfleet.origin": 6,
    "mirrorfleet.agent": 6,
    "mirrorfleet.client": 6,
    "mirrorfleet.monitor": 6,
    "mirrorfleet.control": 6,
    "mirrorfleet.lab": 6,
    "mirrorfleet.testing": 7,
    "mirrorfleet.checks": 7,  # the checks of deployed hosts: pytest runs them
    "mirrorfleet.cli": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(p): p for p in (SRC / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts
    }


MODULES = modules()


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports, anywhere in its source. `from a import b` counts
    as importing a.b when that is a module, else as importing a."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found


def graph() -> dict[str, set[str]]:
    """Edges between the package's own modules, plus the outside names they import."""
    known = set(MODULES)
    return {name: imported(name, path, known) for name, path in MODULES.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(edges):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(edges[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif nxt not in edges or state.get(nxt) == 2:
                continue
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            else:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def part(module: str) -> str:
    """The entry of RANKS a module belongs to: its longest matching prefix."""
    for candidate in sorted(RANKS, key=len, reverse=True):
        if module == candidate or module.startswith(candidate + "."):
            return candidate
    raise AssertionError(f"{module} belongs to no part: add its folder to RANKS")


def own(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if t in edges} for m, targets in edges.items()}


EDGES = graph()


def test_the_graph_is_read() -> None:
    """A test of the test: imports at module level, in functions and relative ones."""
    assert "mirrorfleet.zone.plan" in EDGES["mirrorfleet.zone.update"]
    assert "mirrorfleet.zone.providers.route53" in EDGES["mirrorfleet.zone.providers"]  # lazy
    assert "mirrorfleet.cli.client" in EDGES["mirrorfleet.cli"]  # from mirrorfleet.cli import
    assert "mirrorfleet.checks.sandboxing" in EDGES["mirrorfleet.checks.test_mirror"]
    assert "mirrorfleet.control.inventory" in EDGES["mirrorfleet.checks.conftest"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(own(EDGES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_module_has_a_part() -> None:
    for name in MODULES:
        part(name)


def test_imports_go_down_only() -> None:
    """Each part imports only itself and lower parts: the picture in ARCHITECTURE.md."""
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in own(EDGES).items()
        for target in targets
        if part(target) != part(source) and RANKS[part(target)] >= RANKS[part(source)]
    )
    assert wrong == []


@pytest.mark.parametrize(
    "guarded", ["mirrorfleet.cli", "mirrorfleet.testing", "mirrorfleet.checks"]
)
def test_nothing_outside_imports(guarded: str) -> None:
    """The CLI sits on top, the test harness and the host checks beside it: no runtime
    module uses any of them. `mirrorfleet verify` finds the checks' folder with
    importlib.util.find_spec and hands it to pytest; it does not import them."""
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in EDGES.items()
        if part(source) != guarded
        for target in targets
        if target == guarded or target.startswith(guarded + ".")
    )
    assert wrong == []


def test_the_plan_imports_no_provider() -> None:
    providers = [t for t in EDGES["mirrorfleet.zone.plan"] if t.startswith("mirrorfleet.zone.prov")]
    assert providers == []


def test_the_runtime_package_never_imports_the_roles() -> None:
    """Roles are deploy code; only the test harness renders their configs."""
    wrong = sorted(
        source
        for source, targets in EDGES.items()
        if part(source) != "mirrorfleet.testing"
        and any(t.split(".")[0] == "mirrorfleet_roles" for t in targets)
    )
    assert wrong == []


ROOT = SRC.parent
USERS = ("src", "tests", "bench", "roles", "deploy", "inventories", "deploy.py")


def test_every_imported_name_exists() -> None:
    """Every `from mirrorfleet... import name` anywhere in the checkout resolves, even in
    a function or a lab test this machine cannot run: a moved or renamed name fails
    here, not on a real host."""
    wrong = []
    files = [p for base in USERS for p in sorted((ROOT / base).rglob("*.py"))]
    files += [ROOT / "deploy.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom | ast.Import):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith(PACKAGE)]
                wrong += [f"{path}: import {n}" for n in names if not _resolves(n)]
                continue
            if node.level or not (node.module or "").startswith(PACKAGE):
                continue
            for alias in node.names:
                if not _resolves(node.module, alias.name):
                    wrong.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}"
                    )
    assert wrong == []


def _resolves(module: str, name: str | None = None) -> bool:
    import importlib

    try:
        imported_module = importlib.import_module(module)
    except ImportError:
        return False
    if name is None or hasattr(imported_module, name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True
