"""Sign a browser in to a procurement site and save its session for the workers.

    manage.py capture_session --site coupa --base-url https://acme.coupahost.com
        a visible Chromium opens the site; sign in (SSO, MFA...); the session is saved
        as soon as the site's login detection says signed in, or when Enter is pressed.
    manage.py capture_session --site demo --url http://127.0.0.1:8001/sessions/auto --headless
        follows a scripted sign-in URL (tests, the demo).

The password never reaches poolsite: only the browser's cookies and local storage are
saved, owner-only, under DATA_DIR/sessions/<site>/.

While it waits it prints, every few seconds, what the browser sees (the page's host,
signed in or not, what the site's probe page answered). It gives up at once when the
probe page answers an HTTP error, and stops on Ctrl-C, SIGTERM or SIGHUP, with a
non-zero exit each time; its temp folder and browser go on every way out.
"""

from __future__ import annotations

import getpass
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pool_core.session_check import BASE_PROFILE, STORAGE_STATE, CaptureProgress
from poolsite.sessions.signin import CaptureError, capture


class Command(BaseCommand):
    help = "Open a browser at a site, wait until it is signed in, save the session."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", required=True, help="site preset name (e.g. coupa)")
        parser.add_argument("--url", default="",
                            help="start here (a scripted sign-in URL) instead of the site")
        parser.add_argument("--base-url", default="",
                            help="the site's deployment (tenant), e.g. https://acme.coupahost.com")
        parser.add_argument("--headless", action="store_true",
                            help="no visible window (only useful with --url)")
        parser.add_argument("--profile", action="store_true",
                            help="save a whole browser profile instead of a storage state")
        parser.add_argument("--wait", type=float, default=600.0,
                            help="seconds to wait for the sign-in (default 600)")
        parser.add_argument("--browser", default="",
                            help="Chromium executable for the visible window")

    def handle(self, *args: Any, **options: Any) -> None:
        headless = options["headless"]
        if not headless and not _display():
            raise CommandError(
                "no display to show a browser on: run this where a desktop is available "
                "(or with X forwarding), upload a cookies export on the Site sessions page, "
                "or follow a scripted sign-in URL with --url ... --headless")
        executable = options["browser"] or ("" if headless else _visible_browser())
        stop = multiprocessing.get_context("spawn").Event()
        if not headless:
            self.stdout.write("Sign in in the browser window; the session is saved once the "
                              "site shows you signed in (or press Enter when you are).")
            if sys.stdin.isatty():
                threading.Thread(target=_enter_sets, args=(stop,), daemon=True).start()
        try:
            with _signals_stop():
                saved = capture(
                    options["site"], start_url=options["url"], base_url=options["base_url"],
                    headless=headless,
                    kind=BASE_PROFILE if options["profile"] else STORAGE_STATE,
                    wait_s=options["wait"], executable=executable, stop=stop,
                    username=f"cli:{getpass.getuser()}", on_progress=self._progress)
        except (CaptureError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except _Stopped as stopped:
            raise CommandError(f"capture stopped by {stopped.name}: nothing saved",
                               returncode=128 + stopped.signum) from None
        except KeyboardInterrupt:
            raise CommandError("capture interrupted: nothing saved",
                               returncode=128 + signal.SIGINT) from None
        expiry = saved.earliest_expiry.strftime("%Y-%m-%d %H:%M UTC") if (
            saved.earliest_expiry) else "at the end of the browser session"
        self.stdout.write(self.style.SUCCESS(
            f"session for {saved.site} saved: {saved.cookie_count} cookie(s) for "
            f"{', '.join(saved.cookie_hosts) or 'no host'}; earliest expiry {expiry}"))


    def _progress(self, seen: CaptureProgress) -> None:
        self.stdout.write(seen.line())
        self.stdout.flush()  # shown as it happens, into a pipe or a log file too


class _Stopped(BaseException):  # like KeyboardInterrupt: no `except Exception` takes it
    """SIGTERM or SIGHUP while capturing: unwinds so every clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


@contextmanager
def _signals_stop() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception for the duration (default: the process
    dies on the spot, leaving its browser and temp folder behind)."""
    previous = {signum: signal.signal(signum, _raise_stopped)
                for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _visible_browser() -> str:
    """A Chromium that can show a window (the headless shell cannot)."""
    from django.conf import settings

    explicit = settings.POOL_BROWSER_PATH
    if explicit and "headless" not in os.path.basename(explicit):
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise CommandError("no Chromium that can show a window: install `chromium` or pass "
                       "--browser PATH (chromium-headless-shell cannot show one)")


def _enter_sets(stop: Any) -> None:
    try:
        sys.stdin.readline()
    except (OSError, ValueError):
        return
    stop.set()
