"""What the browser journeys share: the brand colour they set, a watcher for console errors and
uncaught page errors (the ``problems`` fixture in tests/e2e/conftest.py), and signing in."""
from __future__ import annotations

from playwright.sync_api import ConsoleMessage, Page

BRAND = "#0f766e"
BRAND_RGB = "rgb(15, 118, 110)"


class Problems:
    """Console errors (Chromium reports CSP violations there) and uncaught page errors."""

    def __init__(self):
        self.messages: list[str] = []
        self.expected: list[tuple[int, str]] = []

    def expect_error_status(self, status: int, path: str) -> None:
        """The test opens ``path`` knowing it answers ``status``; Chromium logs that as an error."""
        self.expected.append((status, path))

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        # Report violations from the page's own event too, in case the console wording changes.
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
        )
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url") or ""
        if message.text.startswith("Failed to load resource") and any(
                f"status of {status} " in message.text and where.split("?")[0].endswith(path)
                for status, path in self.expected):
            return
        self.messages.append(f"console: {message.text} ({where})")

    def assert_none(self) -> None:
        assert self.messages == [], "\n".join(self.messages)


def sign_in(page: Page, area: str, email: str, password: str) -> None:
    page.goto(f"/{area}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
