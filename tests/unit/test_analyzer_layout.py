"""The analyzer package's layout: subpackages in the order the data flows, no import cycle.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a
lazy import is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "trace_analysis"
# the pipeline, first to last; a module may import from its own stage or an earlier one
STAGES = ["errors", "formats", "model", "sources", "analyses", "reports", "cli"]
CLI_MODULES = {"cli", "cli_common", "compare_run", "browser", "browser_limits"}  # the front ends


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # "from pkg import module" names a module; "from module import name" does not
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in targets]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def _stage(module: str) -> int:
    part = module.split(".")[1] if "." in module else "cli"
    return STAGES.index("cli" if part in CLI_MODULES else part)


def test_every_module_belongs_to_a_stage() -> None:
    for module in _imports():
        if module == "trace_analysis":
            continue
        part = module.split(".")[1]
        assert part in STAGES or part in CLI_MODULES, f"{module}: not in a stage of {STAGES}"


def test_imports_follow_the_pipeline() -> None:
    backwards = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        if module != "trace_analysis"
        for target in targets
        if target != "trace_analysis" and _stage(target) > _stage(module)
    ]
    assert backwards == []


def test_no_import_cycle() -> None:
    graph = _imports()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []
