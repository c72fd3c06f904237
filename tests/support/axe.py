"""axe-core in Chromium: the serious and critical accessibility violations of a page.

axe-core is vendored, pinned, under tests/support/vendor/ (see its README); the app never serves it.
The page's browser context must bypass the app's Content-Security-Policy (``bypass_csp=True``) so
the script can be injected; the pages themselves are served as usual."""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
BLOCKING = ("serious", "critical")


def violations(page: Page, path: str) -> list[str]:
    """axe's serious and critical violations on ``path``, one readable line per node."""
    response = page.goto(path)
    assert response is not None and response.ok, f"{path} answered {response and response.status}"
    page.wait_for_load_state("load")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    found = []
    for rule in result["violations"]:
        if rule["impact"] not in BLOCKING:
            continue
        for node in rule["nodes"]:
            found.append(f"{path}: {rule['id']} ({rule['impact']}) at {' '.join(map(str, node['target']))}: "
                         f"{rule['help']}\n    {node.get('failureSummary', '').replace(chr(10), ' ')}")
    return found
