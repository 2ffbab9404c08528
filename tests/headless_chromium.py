"""Open a page in Debian's headless Chromium: the DOM after load, console messages, a screenshot.

Chromium runs with a fresh profile and every background connection off (the
test machines have no network beyond package registries). Console messages
are read from Chromium's own log on stderr (``--enable-logging=stderr``),
where each one appears as ``...:CONSOLE:LINE] "MESSAGE", source: URL``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_CONSOLE = re.compile(r":CONSOLE:\d+\] (.*)$", re.MULTILINE)
# A guard against a hung browser, not a measurement.
_GUARD_S = 120


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class PageLoad:
    dom: str
    console: list[str]


def load_page(chromium: str, page: Path, profile: Path) -> PageLoad:
    """The serialised DOM once the page has loaded, and every console message."""
    done = _run(chromium, profile, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    return PageLoad(dom=done.stdout, console=_CONSOLE.findall(done.stderr))


def screenshot(chromium: str, page: Path, png: Path, profile: Path, size: str) -> None:
    """A PNG of the top ``size`` (``W,H``) of the page."""
    _run(chromium, profile, f"--window-size={size}", f"--screenshot={png}", page.as_uri())


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=_GUARD_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


class Elements(HTMLParser):
    """Every start tag of a document with its attributes, in order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Tags named ``tag`` whose attributes hold every value given (``class_`` for class)."""
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        return [
            a
            for t, a in self.tags
            if t == tag
            and all(v in a.get(k, "").split() or a.get(k) == v for k, v in wanted.items())
        ]
