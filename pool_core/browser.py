"""Find the Chromium executable, and the launch policy of every worker's browser.

Order of preference: an explicit path (settings: POOL_BROWSER_PATH), the
distribution's `chromium-headless-shell` (the lighter headless build; Debian ships it),
Playwright's own downloaded headless shell, then a full `chromium` on PATH.

Launch policy: the flags every browser gets (BASE_ARGS, launch_args(): the sandbox is
off as root), the extra flags of each browser_mode (BROWSER_MODES, mode_args(): "auto"
picks by the sandbox), and the Playwright driver's Node settings (DEFAULT_NODE_OPTIONS,
NODE_CACHE_DIR).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Sequence
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


# Extra Chromium flags per browser_mode; figures from bench/bench_pool.py (4 workers,
# PSS of the whole tree per worker, 120 POs, median of 2 runs side by side):
# "lean" drops the zygotes and runs the GPU service (software only: --disable-gpu)
# inside the browser process: 159 MB busy / 123 MB idle against 170 / 141 for
# "standard", start-up a little faster, and no more CPU: 0.19 s per PO against 0.21 for
# the whole machine. (An earlier figure said lean cost 60% more CPU; it counted only
# reaped children, and the renderers a zygote forks are never reaped by us.) Each
# renderer is then a fresh exec instead of a zygote fork, which the worker rarely pays
# since it keeps its page from PO to PO. Chromium refuses --no-zygote with its sandbox
# on, so "auto" (the default) is lean where Chromium runs without its sandbox (as root,
# in containers and CI) and standard elsewhere. "single-process" crashed the browser
# when a context was opened after another closed (Trace/breakpoint trap): measured,
# not recommended.
BROWSER_MODES: dict[str, tuple[str, ...]] = {
    "standard": (),
    "lean": ("--no-zygote", "--in-process-gpu"),
    "single-process": ("--single-process", "--no-zygote"),
}
NODE_CACHE_DIR = "poolsite-node-compile-cache"
# For each Playwright driver (node, ~70 MB of a worker's ~150 MB): a 1 MB young generation
# (-11 MB PSS per worker) and no JIT (-5 MB; the driver's CPU per PO did not measurably
# change: bench/bench_pool.py). Without a JIT node has no WebAssembly, which only
# Playwright's trace/screencast WebP codec uses; poolsite records neither. Pass
# node_options="--max-semi-space-size=1" to have the JIT back.
DEFAULT_NODE_OPTIONS = "--max-semi-space-size=1 --jitless"


def mode_args(mode: str) -> tuple[str, ...]:
    """The extra flags of a browser_mode; ValueError for an unknown or unusable mode."""
    unsandboxed = "--no-sandbox" in launch_args()
    if mode == "auto":
        mode = "lean" if unsandboxed else "standard"
    if mode not in BROWSER_MODES:
        raise ValueError(f"browser_mode must be auto or one of {', '.join(BROWSER_MODES)}, "
                         f"got {mode!r}")
    if mode != "standard" and not unsandboxed:
        raise ValueError(f"browser_mode {mode!r} needs Chromium without its sandbox "
                         "(only when running as root in a container)")
    return BROWSER_MODES[mode]


def worker_browser_args(mode: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Every flag of a worker's browser: the base flags, the mode's, then `extra`."""
    return (*launch_args(), *mode_args(mode), *extra)


def default_node_compile_cache() -> str:
    """Node's code cache, shared by every driver and kept between runs."""
    return os.path.join(tempfile.gettempdir(), NODE_CACHE_DIR)


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
