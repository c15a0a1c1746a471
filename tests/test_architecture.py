"""The shape of the package, as the README's Architecture table states it: no import cycles
(counting imports for type checking too), plots free of training code, no library module
importing the CLI, and one module owning the run folder's file names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ptflow

PACKAGE = Path(ptflow.__file__).parent


def _imports(path: Path, *, lazy: bool) -> set[str]:
    """The ptflow modules `path` imports at import time (and, with `lazy`, inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree) if lazy else _module_level(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ptflow."):
            found.add(node.module.split(".")[1])
    return {name for name in found if (PACKAGE / f"{name}.py").exists()}


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    nodes: list[ast.stmt] = []
    for node in body:
        nodes.append(node)
        if isinstance(node, ast.If | ast.Try):  # `if TYPE_CHECKING:` and guarded imports
            nodes += _module_level(node.body)
    return nodes


def _graph(lazy: bool = False) -> dict[str, set[str]]:
    return {path.stem: _imports(path, lazy=lazy) for path in PACKAGE.glob("*.py")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles = []

    def walk(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif len(path) < len(graph):
                walk(imported, [*path, imported])

    for module in sorted(graph):
        walk(module, [module])
    return cycles


def test_no_module_imports_itself_back_at_import_time() -> None:
    graph = _graph()
    assert _cycles(graph) == []
    assert graph["distributed"] <= {"batches", "console", "devices", "errors", "evaluation"}


def test_plots_and_the_run_folder_need_no_training_code() -> None:
    graph = _graph(lazy=True)
    light = ("plots", "run_folder", "runs", "history", "files", "errors", "config", "console")
    for module in light:
        assert not graph[module] & {"training", "workflow", "streaming", "distributed"}, module


def test_no_library_module_imports_the_cli() -> None:
    for module, imported in _graph(lazy=True).items():
        if module not in ("cli", "__main__"):
            assert "cli" not in imported, module


def test_only_run_folder_names_the_lock_and_the_aside_folder() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.stem != "run_folder":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"\.ptflow\.lock|\"\.replaced\"", text), path.name


def test_no_module_but_tasks_names_a_metric() -> None:
    """cli, report, runs and explain print what the run's task declares (tasks.py)."""
    named = re.compile(r"""["'](mae|mse|rmse|r2|MAE|RMSE|R²)["']|\.(mae|rmse|r2)\b""")
    for module in ("cli", "report", "runs", "explain", "workflow"):
        text = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        assert not named.search(text), (module, named.search(text))


def test_only_tables_reads_a_data_file() -> None:
    """Every CSV and Parquet file is read through tables.py (and its fast CSV parser), so
    each check of a table's values is written once."""
    readers = re.compile(r"read_csv\(|ParquetFile\(|read_table\(|read_schema\(|open_csv\(")
    for path in PACKAGE.glob("*.py"):
        if path.stem not in ("tables", "csv_blocks"):
            found = readers.search(path.read_text(encoding="utf-8"))
            assert found is None, (path.name, found)


def test_the_readme_module_table_matches_the_code() -> None:
    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)\.py` \| .+ \| (.+) \|$", section, flags=re.MULTILINE)
    listed = {module: set(re.findall(r"`(\w+)`", imports)) for module, imports in rows}
    assert len(rows) == len(listed)  # each module once
    assert listed == _graph()  # every module, with exactly what it imports


def test_only_run_folder_names_the_run_folders_files() -> None:
    """Its record, results, history and split are read and written by run_folder.py alone."""
    names = re.compile(r"""["'](config\.json|summary\.json|history\.csv|split_indices\.npz)["']""")
    for path in PACKAGE.glob("*.py"):
        if path.stem != "run_folder":
            found = names.search(path.read_text(encoding="utf-8"))
            assert found is None, (path.name, found)


def test_no_function_is_longer_than_eighty_lines() -> None:
    """A function a reader cannot see at once is several; `train` itself is one screen."""
    import ast

    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 80, f"{path.name}: {node.name} has {length} lines"
