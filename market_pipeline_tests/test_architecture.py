"""The package keeps its shape: layer contracts, no import cycles, modules and functions that read.

The layers are import-linter contracts in pyproject.toml (``lint-imports`` runs them in CI too);
these tests make ``make test`` fail on a forbidden import, a cycle, or a module or function that
outgrew what a reader holds in their head.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "market_pipeline"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_BY_DESIGN = {"market_pipeline/domain/features/recursive.py:scan_rows"}
"""The numba row kernel: one compiled loop over every recursive feature, kept whole on purpose."""


def test_the_layer_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected components, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_there_is_no_import_cycle_even_through_function_level_imports():
    graph = grimp.build_graph("market_pipeline")
    assert _cycles(graph) == []


def test_only_the_launcher_imports_the_definitions():
    graph = grimp.build_graph("market_pipeline")
    importers = graph.find_modules_that_directly_import("market_pipeline.definitions")
    assert importers == {"market_pipeline.cli.launcher"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_the_size_a_reader_can_hold():
    too_long = {
        str(path.relative_to(REPO)): lines
        for path in _sources()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_no_function_is_over_a_screenful_or_two():
    too_long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(REPO)}:{node.name}"
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and where not in LONG_BY_DESIGN:
                    too_long[where] = lines
    assert too_long == {}
