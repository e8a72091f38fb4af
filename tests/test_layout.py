"""The layout shows the architecture, and this keeps it so: each package imports only the
floors below it (scripts -> eval -> training -> datasets_fmt), the offline bundle stands alone
(stdlib only, as a bare node has), benchmarks are never imported by the code they measure,
and nothing imports scripts/."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("datasets_fmt", "training", "eval", "offline", "benchmarks", "scripts")
# package -> the project packages it may import
ALLOWED = {
    "datasets_fmt": {"datasets_fmt"},
    "training": {"datasets_fmt", "training"},
    "eval": {"datasets_fmt", "training", "eval"},
    "offline": {"offline"},
    "benchmarks": {"datasets_fmt", "training", "eval", "benchmarks"},
    "scripts": {"datasets_fmt", "training", "eval", "offline"},
}


def imported_packages(path: Path) -> set[str]:
    """The project packages a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PROJECT)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_floors_below_it(package):
    wrong = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) - ALLOWED[package])
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}
