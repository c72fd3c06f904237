"""The house rules that a reviewer would otherwise have to remember (H1).

- The import-linter contracts in ``pyproject.toml`` hold: layers web → services → models → billing,
  ``stripe`` only in ``gateways/stripe.py``, ``flask.request`` only in ``web/``, no import cycle among
  the services (``lint-imports`` runs here, so ``make test`` enforces them).
- No module imports another module's underscore name (``from portal.x import _helper``), and no module
  reaches into another one's private names through an attribute (``payments._lock``): a helper two
  modules share gets a public name in a public home.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTAL = ROOT / "portal"


def _modules():
    for path in sorted(PORTAL.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_modules(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local name → portal module, for ``import portal.x as y`` and ``from portal import x``."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = _absolute(node, module, is_package)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("portal") and alias.asname:
                    names[alias.asname] = alias.name
    return names


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def test_no_module_imports_another_modules_private_names():
    found = []
    known = {name for name, _ in _modules()}
    for module, path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                source = _absolute(node, module, is_package)
                if not source.startswith("portal") or source == module:
                    continue
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {alias.name}")
        aliases = {local: target for local, target in _imported_modules(tree, module, is_package).items()
                   if target in known and target != module}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_request_contract_catches_a_service_reading_request():
    """The custom contract itself: a service module that imports ``request`` breaks it; web may."""
    import grimp

    from tests.support.import_contracts import ForbiddenNamesContract

    graph = grimp.ImportGraph()
    for module in ("portal", "portal.web", "portal.web.pay", "portal.services", "portal.services.x", "flask"):
        graph.add_module(module)
    graph.add_import(importer="portal.web.pay", imported="flask", line_number=3,
                     line_contents="from flask import abort, request")
    graph.add_import(importer="portal.services.x", imported="flask", line_number=4,
                     line_contents="from flask import current_app")
    contract = ForbiddenNamesContract(name="request", session_options={}, contract_options={
        "source_modules": ["portal"], "allowed_modules": ["portal.web"], "names": ["flask.request"]})
    assert contract.check(graph, verbose=False).kept

    graph.add_import(importer="portal.services.x", imported="flask", line_number=9,
                     line_contents="    from flask import current_app, request as req")
    check = contract.check(graph, verbose=False)
    assert not check.kept
    assert check.metadata["broken"] == ["portal.services.x:9: from flask import current_app, request as req"]
