"""Headless Chromium for the report tests and `make report-screenshot`.

Debian's `chromium` at /usr/bin/chromium, which `make test` installs (Playwright's own browser
download cannot run here); driven by the `playwright` package. Nothing here installs anything.

    python tests/browser.py REPORT.html OUT.png     # a full-page screenshot
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from playwright.sync_api import Browser, Dialog, Page, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MISSING = f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium package"


def require_chromium() -> None:
    """For tests: fail, never skip, without the browser, so that a run missing it cannot pass."""
    import pytest

    if not CHROMIUM.exists():
        pytest.fail(MISSING, pytrace=False)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Loaded:
    """A page opened from a file with every other request refused, and what happened on the way."""

    page: Page
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url]


def load(browser: Browser, path: Path, width: int = 1280) -> Loaded:
    """Open `path`; any request but the file itself is aborted and recorded."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    loaded = Loaded(page=context.new_page(), url=path.resolve().as_uri())

    def route(r: Route) -> None:
        loaded.requests.append(r.request.url)
        if r.request.url == loaded.url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = loaded.page
    page.on("console", lambda m: loaded.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: loaded.errors.append(str(e)))

    def dialog(d: Dialog) -> None:
        loaded.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(loaded.url)
    page.wait_for_load_state("load")
    return loaded


class References(HTMLParser):
    """Every URL an HTML page could fetch by itself: src/href-like attributes, CSS url() and @import."""

    ATTRS = frozenset({"src", "href", "srcset", "poster", "data", "action", "formaction", "background"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in self.ATTRS or name.endswith(":href"):
                self.urls.append(value.strip())
            elif name == "style":
                self.urls += css_urls(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += css_urls(data)


def css_urls(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]*)", css, flags=re.IGNORECASE)
    found += re.findall(r"@import\s+['\"]([^'\"]*)", css, flags=re.IGNORECASE)
    return [u.strip() for u in found]


def loaded_references(html: str) -> list[str]:
    """The URLs in `html` that would load something: all but fragments (#id) and data: URLs, so
    http(s)://..., protocol-relative //host/... and relative paths alike."""
    parser = References()
    parser.feed(html)
    parser.close()
    return [u for u in parser.urls if u and not u.startswith("#") and not u.lower().startswith("data:")]


def screenshot(report: Path, out: Path, width: int = 1280) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(out), full_page=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/browser.py REPORT.html OUT.png", file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print(f"error: {MISSING}", file=sys.stderr)
        return 1
    report, out = Path(argv[0]), Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    screenshot(report, out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
