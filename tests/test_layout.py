"""The test suite's own house rule: no test module imports another test module (or a conftest).
What tests share lives in tests/support/; fixtures shared by a folder live in its conftest.py."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module ``path`` imports, including ``from tests.x import y`` as tests.x.y."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_no_test_module_imports_another_test_module():
    offences = []
    for path in sorted(TESTS.rglob("*.py")):
        if "support" in path.relative_to(TESTS).parts[:1]:
            continue
        for line, name in imported_modules(path):
            if name.startswith(".") or (name.startswith("tests.") and not name.startswith("tests.support.")) \
                    or name == "tests":
                offences.append(f"{path.relative_to(TESTS.parent)}:{line} imports {name}")
    assert offences == [], "share it through tests/support/ or a conftest.py instead:\n" + "\n".join(offences)


def test_the_rule_sees_an_import_of_a_test_module(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("from tests.web.test_auth import text_of\nimport tests.conftest\nfrom . import helpers\n"
                      "from tests.support import make\n", encoding="utf-8")
    assert [name for _, name in imported_modules(sample)] == [
        "tests.web.test_auth.text_of", "tests.conftest", ".", "tests.support.make"]
