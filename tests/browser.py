"""Open a page in a real headless Chromium (Debian's ``chromium``): its DOM after the scripts ran,
the console messages it logged, and a screenshot. Tests skip, with the reason shown, where no
Chromium is installed (``make test`` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


@dataclass
class Page:
    dom: str
    console: list[str]
    screenshot: Path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (make test installs Debian's chromium)")


def open_page(html: Path, screenshot: Path, width: int = 1200, height: int = 2400) -> Page:
    """Load ``html`` from disk twice: once to dump the DOM (with the console log), once to
    screenshot it. The network is off for both: the page must need nothing from outside."""
    exe = chromium()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    offline = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
    url = html.resolve().as_uri()
    dump = subprocess.run([exe, *FLAGS, *offline, "--dump-dom", url], capture_output=True,
                          text=True, timeout=120)
    shot = subprocess.run([exe, *FLAGS, *offline, f"--window-size={width},{height}",
                           f"--screenshot={screenshot}", url], capture_output=True, text=True,
                          timeout=120)
    assert screenshot.is_file(), shot.stderr[-2000:]
    console = [m.group(1) for m in CONSOLE.finditer(dump.stderr + shot.stderr)]
    return Page(dump.stdout, console, screenshot)
