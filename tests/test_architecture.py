"""The house's rules, checked statically over the package's own imports: no import circle
between modules, and no subpackage importing one it may not (the table below is the one in
docs/ARCHITECTURE.md). A new module or a new import that breaks either fails here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

# What each subpackage may import besides itself. Lower stages never import higher ones.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "media": {"core"},
    "cost": {"core", "media"},
    "outputs": {"core"},
    "cache": {"core", "outputs"},
    "inputs": {"core", "media"},
    "api": {"core", "media", "cost"},
    "manifest": {"core", "media", "cost", "outputs", "inputs"},
    "ledger": {"core", "cost", "outputs"},
    "simulator": {"core", "media", "cost"},
    "engine": {
        "core",
        "media",
        "cost",
        "outputs",
        "cache",
        "inputs",
        "api",
        "manifest",
        "ledger",
        "simulator",
    },
    "batch": {
        "core",
        "media",
        "cost",
        "outputs",
        "cache",
        "inputs",
        "api",
        "manifest",
        "ledger",
        "engine",
        "simulator",
    },
    "report": {"core", "media", "cost", "outputs", "manifest", "ledger"},
}
# The command line sits on top: it may import every stage.
ALLOWED["cli"] = set(ALLOWED)
TOP_LEVEL = {"__init__", "__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The package modules `path` imports (at any depth of the file, lazily or not)."""
    tree = ast.parse(path.read_text("utf-8"))
    this = module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = this.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("pipeline"):
                continue
            for alias in node.names:  # `from pipeline.cost import tokens` imports a module
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
    return {m for m in found if m != this}


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    root = PACKAGE.parent
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_every_module_lives_in_a_known_subpackage():
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL) + sorted(
        d.name
        for d in PACKAGE.iterdir()
        if d.is_dir() and (d / "__init__.py").exists() and d.name not in ALLOWED
    )
    assert loose == [], (
        f"place these in a subpackage listed in ALLOWED (and ARCHITECTURE.md): {loose}"
    )


def test_no_subpackage_imports_a_higher_stage():
    wrong = []
    for module, deps in graph().items():
        here = stage(module)
        if here is None:
            continue
        for dep in sorted(deps):
            there = stage(dep)
            if there is not None and there != here and there not in ALLOWED[here]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == [], "imports against the direction of the data flow:\n" + "\n".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_modules():
    edges = graph()
    # A package's __init__ importing its own modules is how a face is made, not a circle.
    for module, deps in edges.items():
        edges[module] = {d for d in deps if not module.startswith(d + ".") and d != "pipeline"}
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    ("edges", "has_cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"a"}}, True),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a"}}, True),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, has_cycle):
    assert (find_cycle(edges) is not None) is has_cycle


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pipeline" / "report"
    pkg.mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "engine").mkdir()
    (tmp_path / "pipeline" / "engine" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "engine" / "runner.py").write_text("")
    (pkg / "__init__.py").write_text("")
    mod = pkg / "page.py"
    mod.write_text("def f():\n    from ..engine import runner\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "pipeline"
    try:
        assert imports_of(mod) == {"pipeline.engine.runner"}
    finally:
        PACKAGE = saved
