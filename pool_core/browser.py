"""Find the Chromium executable and the launch flags every worker uses.

Order of preference: an explicit path (settings: POOL_BROWSER_PATH), the
distribution's `chromium-headless-shell` (the lighter headless build; Debian ships it),
Playwright's own downloaded headless shell, then a full `chromium` on PATH.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from pool_core.errors import BrowserNotFoundError

INSTALL_HINT = (
    "install one with `apt-get install chromium-headless-shell` (Debian/Ubuntu, as root) "
    "or `.venv/bin/playwright install chromium-headless-shell`, or set POOL_BROWSER_PATH"
)

# Flags that matter for many unattended browsers on a small machine.
BASE_ARGS = (
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--password-store=basic",
    "--metrics-recording-only",
    "--mute-audio",
    # No popups: a page may not open windows we did not ask for (their requests would
    # otherwise need refusing one by one; see url_guard.py).
    "--block-new-web-contents",
    # Headless pages need no GPU, and without the software GL fallback the GPU process
    # shrinks from ~24 to ~14 MB PSS: -11 MB per worker, idle and busy, with the same
    # CPU per PO (bench/bench_pool.py, side by side). Screenshots and PDFs still work.
    "--disable-gpu",
    "--disable-software-rasterizer",
    # The network service runs inside the browser process instead of a process of its
    # own: ~9 MB PSS less per worker (bench/bench_pool.py), no measurable CPU cost.
    # Chromium reads only the last --enable-features, and Playwright passes its own
    # first, so its features are repeated here; tests/pool_core/test_browser_flags.py
    # fails if Playwright's list grows.
    "--enable-features=" + ",".join((
        "NetworkServiceInProcess2",
        "CDPScreenshotNewSurface", "SkipListAccountsWithoutGaiaCookies",  # Playwright's
    )),
)


def find_browser(explicit: str | None = None) -> str:
    """Return the path of a Chromium executable, or raise BrowserNotFoundError."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise BrowserNotFoundError(f"browser path {explicit!r} is not an executable file")
    for name in ("chromium-headless-shell",):
        found = shutil.which(name)
        if found:
            return found
    for found in sorted(glob.glob(_playwright_cache_pattern()), reverse=True):
        if os.access(found, os.X_OK):
            return found
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFoundError(f"no Chromium executable found: {INSTALL_HINT}")


def launch_args() -> list[str]:
    """Return the Chromium command-line flags for a worker's browser."""
    args = list(BASE_ARGS)
    # Chromium refuses to start its sandbox as root (containers, CI).
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def _playwright_cache_pattern() -> str:
    cache = Path.home() / ".cache" / "ms-playwright"
    return str(cache / "chromium_headless_shell-*" / "chrome-linux*" / "*headless_shell")


def main(argv: list[str]) -> int:
    """Print the browser that workers will use; exit 1 with the install hint if none."""
    try:
        print("browser:", find_browser(argv[0] if argv else None))
    except BrowserNotFoundError as exc:
        print(f"error: {exc}")
        return 1
    return 0
