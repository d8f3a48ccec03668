"""One isolated temp root per worker: browser profile, TMPDIR, scratch space.

    <temp_dir>/poolsite-<owner pid>-w<worker id>-<random>/
        owner.json          the pool's pid and start time (to tell a dead pool's roots)
        pids.json           the worker's processes (written by the worker)
        profile/            user-data-dir, cloned from a base profile (persistent mode)
        storage_state.json  a Playwright storage state to seed contexts from
        tmp/                TMPDIR of the worker: Playwright's and Chromium's temp folders
        work/               JobEnv.work_root: hidden work folders of the job

A pool's ProfileManager removes its roots on every exit path; at start it sweeps roots
whose owner died (SIGKILL of the host) together with the processes still using them,
and leaves every other pool's roots and every other Chromium alone. The same sweep takes
the session jobs' roots (`poolsite-session-<owner pid>-*`, see session_check) whose
owner died, and those of older versions without an owner once they are a day old.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pool_core.errors import ProfileCreationError
from pool_core.process_tree import kill_tree

log = logging.getLogger(__name__)
ROOT_PREFIX = "poolsite-"
_ROOT_RE = re.compile(r"^poolsite-(\d+)-w\d+-[0-9a-f]+$")
SESSION_ROOT_PREFIX = "poolsite-session-"
_SESSION_ROOT_RE = re.compile(r"^poolsite-session-(?:(\d+)-)?[A-Za-z0-9_]+$")
UNOWNED_ROOT_AGE_S = 24 * 3600  # a session root naming no owner is stale after this
# What a signed-in session needs: its cookies and the site's storage (local, session,
# IndexedDB) with the files Chromium needs to open them; never caches, never Singleton*
# files (a copied SingletonLock makes Chromium refuse the profile).
SESSION_ESSENTIALS = (
    "Local State",
    "Default/Preferences",
    "Default/Cookies",
    "Default/Cookies-journal",
    "Default/Network/Cookies",
    "Default/Network/Cookies-journal",
    "Default/Local Storage",
    "Default/Session Storage",
    "Default/IndexedDB",
)


@dataclass(frozen=True)
class WorkerRoot:
    """The paths of one worker's temp root."""

    path: str
    worker_id: int
    persistent_profile: bool  # launch with profile/ as user-data-dir
    storage_state: str  # path of storage_state.json, or ""

    @property
    def profile_dir(self) -> str:
        return os.path.join(self.path, "profile")

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.path, "tmp")

    @property
    def work_dir(self) -> str:
        return os.path.join(self.path, "work")


@dataclass(frozen=True)
class SweepReport:
    roots_removed: int
    processes_killed: int


class ProfileManager:
    """Create, clean up and sweep workers' temp roots.

    Args:
        temp_dir: where roots live (default: the system temp folder).
        base_profile: a signed-in Chromium user-data-dir to clone per worker
            (session essentials only).
        storage_state: a Playwright storage state (path to a JSON file, or the dict) to
            seed every browser context with. Ignored when base_profile is given.
        min_free_disk_mb: refuse to create a root when less disk is free.
    """

    def __init__(self, *, temp_dir: str | None = None, base_profile: str | None = None,
                 storage_state: str | dict[str, Any] | None = None,
                 min_free_disk_mb: int = 200) -> None:
        self.temp_dir = os.path.abspath(temp_dir or tempfile.gettempdir())
        self.base_profile = base_profile
        self.storage_state = storage_state
        self.min_free_disk_mb = min_free_disk_mb
        self.owner_pid = os.getpid()
        self._owner_started = psutil.Process().create_time()

    def create_root(self, worker_id: int) -> WorkerRoot:
        """Create a fresh root for a worker; ProfileCreationError on any failure."""
        self._check_disk()
        name = f"{ROOT_PREFIX}{self.owner_pid}-w{worker_id}-{secrets.token_hex(4)}"
        path = os.path.join(self.temp_dir, name)
        try:
            os.makedirs(os.path.join(path, "tmp"))
            os.makedirs(os.path.join(path, "work"))
            _write_json(os.path.join(path, "owner.json"),
                        {"pid": self.owner_pid, "create_time": self._owner_started})
            state_path = self._write_storage_state(path)
            if self.base_profile:
                self._clone_base_profile(os.path.join(path, "profile"))
        except ProfileCreationError:
            self.remove_root(path)
            raise
        except (OSError, TypeError, ValueError) as exc:
            self.remove_root(path)
            raise ProfileCreationError(f"cannot create worker root {path}: {exc}") from exc
        return WorkerRoot(path=path, worker_id=worker_id,
                          persistent_profile=bool(self.base_profile), storage_state=state_path)

    def create_roots(self, count: int) -> list[WorkerRoot]:
        """Sweep stale roots, then create one per worker 0..count-1: all or none (on any
        failure the roots made so far are removed and the exception raised)."""
        roots: list[WorkerRoot] = []
        try:
            self.sweep_stale()
            for slot in range(count):
                roots.append(self.create_root(slot))
        except Exception:
            for root in roots:
                self.remove_root(root.path)
            raise
        return roots

    def remove_root(self, path: str) -> None:
        """Delete a root (its processes must be gone); never raises."""
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            log.warning("could not remove worker root %s", path)

    def our_roots(self) -> list[str]:
        """Return the roots this pool owns that still exist."""
        return [str(p) for p in self._all_roots() if _owner_pid(p.name) == self.owner_pid]

    def sweep_stale(self) -> SweepReport:
        """Kill processes of, and remove, roots left by pools (and session captures or
        probes) whose owner died."""
        removed = killed = 0
        for root in self._all_roots(with_sessions=True):
            if not self._owner_is_dead(root):
                continue
            killed += kill_tree(None, str(root))
            self.remove_root(str(root))
            removed += 1
            log.info("swept stale %s root %s",
                     "session" if _SESSION_ROOT_RE.match(root.name) else "worker", root)
        return SweepReport(roots_removed=removed, processes_killed=killed)

    # -- helpers ---------------------------------------------------------------------
    def _all_roots(self, with_sessions: bool = False) -> list[Path]:
        try:
            return [p for p in Path(self.temp_dir).iterdir() if _ROOT_RE.match(p.name) or (
                with_sessions and _SESSION_ROOT_RE.match(p.name))]
        except OSError:
            return []

    def _owner_is_dead(self, root: Path) -> bool:
        try:
            owner = json.loads((root / "owner.json").read_text(encoding="utf-8"))
            pid, started = int(owner["pid"]), float(owner["create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, started = _owner_pid(root.name) or 0, None
        if not pid:  # a session root from before they named their owner: by age
            try:
                return time.time() - root.stat().st_mtime > UNOWNED_ROOT_AGE_S
            except OSError:
                return False
        if pid == self.owner_pid:
            return False
        try:
            proc = psutil.Process(pid)
            # A reused pid belongs to a process started after our owner.
            return started is not None and abs(proc.create_time() - started) > 0.5
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def _check_disk(self) -> None:
        try:
            free_mb = shutil.disk_usage(self.temp_dir).free / (1024 * 1024)
        except OSError as exc:
            raise ProfileCreationError(f"temp folder {self.temp_dir} unusable: {exc}") from exc
        if free_mb < self.min_free_disk_mb:
            raise ProfileCreationError(
                f"only {free_mb:.0f} MB free in {self.temp_dir}; workers need at least "
                f"{self.min_free_disk_mb} MB (min_free_disk_mb)")

    def _write_storage_state(self, root: str) -> str:
        if self.storage_state is None or self.base_profile:
            return ""
        target = os.path.join(root, "storage_state.json")
        if isinstance(self.storage_state, dict):
            _write_json(target, self.storage_state)
        else:
            try:
                data = json.loads(Path(self.storage_state).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ProfileCreationError(
                    f"storage state {self.storage_state}: {exc}") from exc
            _write_json(target, data)
        return target

    def _clone_base_profile(self, target: str) -> None:
        base = Path(self.base_profile or "")
        if not (base / "Local State").is_file() and not (base / "Default").is_dir():
            raise ProfileCreationError(f"base profile {base} is not a Chromium user-data-dir")
        os.makedirs(target)
        for rel in SESSION_ESSENTIALS:
            source = base / rel
            dest = Path(target) / rel
            if source.is_dir():
                shutil.copytree(source, dest, ignore=shutil.ignore_patterns("LOCK"))
            elif source.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


def _owner_pid(name: str) -> int | None:
    match = _ROOT_RE.match(name) or _SESSION_ROOT_RE.match(name)
    return int(match.group(1)) if match and match.group(1) else None


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
