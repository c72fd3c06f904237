"""A custom import-linter contract: some *names* of a package may be read only by some modules.

import-linter's own contracts speak of modules; "``flask.request`` is read only in ``portal.web``"
speaks of a name inside ``flask``, a module that services may import for ``current_app``. grimp keeps
each import's source line, so the contract reads which names every ``from flask import …`` brings in.

    [[tool.importlinter.contracts]]
    type = "forbidden_names"
    source_modules = ["portal"]          # checked, with their descendants
    allowed_modules = ["portal.web"]     # may import the names (and their descendants)
    names = ["flask.request"]            # module.name
"""
from __future__ import annotations

import re

from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _within(module: str, parents: set[str]) -> bool:
    return any(module == parent or module.startswith(parent + ".") for parent in parents)


def _imported_names(line: str) -> set[str]:
    """``from flask import current_app, request as r`` → {"current_app", "request"}; ``import flask`` → {"*"}."""
    found = re.match(r"\s*from\s+[\w.]+\s+import\s+\(?(.*?)\)?\s*(#.*)?$", line)
    if not found:
        return {"*"}  # `import flask` then `flask.request`: counted as reading everything
    return {part.strip().split(" as ")[0].strip() for part in found.group(1).split(",") if part.strip()}


class ForbiddenNamesContract(Contract):
    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField(), required=False)
    names = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        sources = set(self.source_modules)
        allowed = set(self.allowed_modules or [])
        wanted: dict[str, set[str]] = {}
        for dotted in self.names:
            package, _, name = dotted.rpartition(".")
            wanted.setdefault(package, set()).add(name)
        broken = []
        for module in sorted(graph.modules):
            if not _within(module, sources) or _within(module, allowed):
                continue
            for package, names in wanted.items():
                if package not in graph.modules:
                    continue
                for detail in graph.get_import_details(importer=module, imported=package):
                    hit = _imported_names(detail["line_contents"]) & (names | {"*"})
                    if hit:
                        broken.append(f"{module}:{detail['line_number']}: {detail['line_contents'].strip()}")
        return ContractCheck(kept=not broken, warnings=[], metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["broken"]:
            output.print_error(line, bold=False)
            output.new_line()
