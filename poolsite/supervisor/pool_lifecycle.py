"""This host's WorkerPool and its Run row: build and start it, stop it, hand back its POs.

`PoolRunner` owns the pool a host runs (at most one at a time) and the Run that records
it. Stopping a pool can take the graceful timeout, so it runs in a helper thread while
the host's heartbeats go on. POs claimed ahead and never given to a worker go back to
the queue whenever the pool pauses or stops (`PurchaseOrder.objects.release`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from django.db import close_old_connections
from django.utils import timezone

from pool_core import HeadlessConfiguration, PoolStatus, ProfileManager, WorkerPool
from pool_core.errors import PoolError
from pool_core.sites import SitePreset, load_presets
from poolsite.batches.models import Batch, PurchaseOrder, Run
from poolsite.sessions.store import session_for, session_version
from poolsite.supervisor.host_options import HostOptions
from poolsite.supervisor.recording import Recorder
from poolsite.supervisor.task_source import DbTaskSource

log = logging.getLogger(__name__)
START_ATTEMPTS = 3  # consecutive failed pool starts before the plan pauses


def site_for_batch(batch: Batch, presets: dict[str, SitePreset],
                   base_url_overrides: dict[str, str]) -> SitePreset | None:
    """The preset a batch's workers use: its Site's tenant, or the batch's own address.

    With a configured Site, the tenant's host and its extra hosts join the allow-list,
    as the Site is now (an operator who adds a download host fixes a retry). This host's
    explicit address for a preset (the demo site's port) wins over the stored one.
    """
    preset = presets.get(batch.site_preset)
    if preset is None:
        return None
    override = base_url_overrides.get(preset.name, "")
    site = batch.site if batch.site_id else None
    if site is not None:
        return preset.for_tenant(override or site.base_url, tuple(site.extra_hosts or ()))
    base_url = override or batch.site_base_url
    return preset.with_base_url(base_url) if base_url else preset


class PoolRunner:
    """Start, stop and hand back the pool of one host (see the module docstring)."""

    def __init__(self, *, name: str, options: HostOptions, source: DbTaskSource,
                 recorder: Recorder, wake: threading.Event) -> None:
        self.name = name
        self.options = options
        self.source = source
        self.recorder = recorder
        self.wake = wake
        self.pool: WorkerPool | None = None
        self.run: Run | None = None
        self._stopper: threading.Thread | None = None
        self._session_version = 0  # of the session the pool was built on (replaced: restart)
        self._start_failures = 0
        self._presets = load_presets(
            (Path(options.sites_dir),) if options.sites_dir else ())

    # -- starting ---------------------------------------------------------------------------
    def start(self, batch: Batch, size: int) -> str:
        """Start `size` workers on `batch`; "" when started, else why the plan must pause.

        A worker lost while starting is worth another try; a missing browser or a full
        disk is not, and retrying forever would hide it from the operator: after
        START_ATTEMPTS failures in a row the answer is the reason to pause with.
        """
        if self.site_for(batch) is None:  # no allow-list, no egress proxy: never run it
            return (f"batch {batch} is for the site preset {batch.site_preset!r}, which is "
                    f"not loaded on {self.name} (was it in POOL_SITES_DIR?)")
        pool = self._build_pool(batch, size)
        self.run = Run.objects.create(batch=batch, host=self.name, pool_size=size,
                                      state=Run.State.STARTING)
        self.recorder.run_id = self.run.pk
        self.source.set_batch(batch)
        self.source.set_paused(False)
        self.source.set_prefetch(size)
        self.pool = pool
        try:
            pool.start_processing(None, batch=batch.output_dir_name())
        except (PoolError, RuntimeError, ValueError, OSError) as exc:
            log.exception("could not start the pool")
            self.end_run(Run.State.CRASHED)
            self.pool = None
            self.release_held()
            self._start_failures += 1
            if self._start_failures >= START_ATTEMPTS:
                return f"pool could not start on {self.name}: {exc}"
            self.recorder.note("start_failed", f"{self.name} could not start its pool "
                               f"(try {self._start_failures}): {exc}", "warning")
            return ""
        self._start_failures = 0
        Run.objects.filter(pk=self.run.pk).update(state=Run.State.RUNNING)
        self.recorder.note("run_started", f"{self.name} started {size} workers "
                           f"on batch {batch}")
        return ""

    def _build_pool(self, batch: Batch, size: int) -> WorkerPool:
        options = self.options
        storage_state, base_profile = options.storage_state, options.base_profile
        if not (storage_state or base_profile):  # no explicit session: the site's saved one
            storage_state, base_profile = (p or "" for p in session_for(batch.site_preset))
        profiles = ProfileManager(base_profile=base_profile or None,
                                  storage_state=storage_state or None)
        self._session_version = session_version(batch.site_preset, storage_state, base_profile)
        return WorkerPool(
            size, headless_config=HeadlessConfiguration(headless=options.headless),
            profile_manager=profiles, max_task_timeout=options.max_task_timeout,
            output_root=str(options.output_root), site=self.site_for(batch),
            process_fn=options.process_fn, retry_limit=max(0, options.max_attempts - 1),
            memory_soft_limit_mb=options.memory_soft_mb,
            memory_hard_limit_mb=options.memory_hard_mb,
            memory_check_interval=options.memory_check_seconds,
            browser_path=options.browser_path or None, task_source=self.source,
            on_event=self.recorder.on_event,
            keep_records=False)  # the recorder stores them; a host runs for months

    def site_for(self, batch: Batch) -> SitePreset | None:
        return site_for_batch(batch, self._presets, dict(self.options.site_base_urls))

    def session_replaced(self) -> bool:
        """Whether the session this pool was built on has been replaced since."""
        options, batch = self.options, self.run.batch if self.run else None
        return batch is not None and self._session_version != session_version(
            batch.site_preset, options.storage_state, options.base_profile)

    def recover_from_error(self, pool: WorkerPool) -> str:
        """The pool is in ERROR: hand its POs back and drop it; return its reason."""
        reason = pool.get_status().get("state_reason", "")
        log.error("pool in ERROR: %s", reason)
        self.recorder.note("pool_error", f"{self.name} pool error: {reason}", "error")
        self.release_held()
        pool.reset()
        self.end_run(Run.State.CRASHED)
        self.pool = None
        return str(reason)

    # -- stopping ---------------------------------------------------------------------------
    def stopping(self) -> bool:
        return self._stopper is not None and self._stopper.is_alive()

    def stop_async(self, *, immediate: bool, why: str) -> None:
        if self.stopping():
            return
        self._stopper = threading.Thread(target=self.stop, args=(immediate, why),
                                         name="pool-stopper", daemon=True)
        self._stopper.start()

    def join_stopper(self, timeout: float) -> None:
        if self._stopper is not None:
            self._stopper.join(timeout)

    def stop(self, immediate: bool, why: str) -> None:
        pool = self.pool
        if pool is None:
            return
        try:
            if pool.status in (PoolStatus.RUNNING, PoolStatus.PAUSED, PoolStatus.STARTING):
                timeout = 0.5 if immediate else self.options.stop_timeout
                clean = pool.stop_processing(timeout=timeout)
                log.info("pool stopped (%s)%s", why,
                         "" if clean else "; not every worker stopped cleanly")
            self.recorder.flush()
            self.release_held()
            self.end_run(Run.State.FINISHED)
            self.recorder.note("run_stopped", f"{self.name} stopped its workers: {why}")
        except Exception:
            log.exception("stopping the pool failed")
        finally:
            self.pool = None
            close_old_connections()
            self.wake.set()

    def hand_back_prefetched(self) -> None:
        """While paused, POs claimed ahead go back to the queue (other hosts may run)."""
        self.source.set_paused(True)
        held = [int(t.key) for t in self.source.drain()]
        if held:
            PurchaseOrder.objects.release(self.name, held)

    def release_held(self) -> None:
        self.source.set_batch(None)
        held = [int(t.key) for t in self.source.drain()]
        if held:
            PurchaseOrder.objects.release(self.name, held)

    def end_run(self, state: str) -> None:
        if self.run is None:
            return
        Run.objects.filter(pk=self.run.pk).update(state=state, finished_at=timezone.now())
        self.run = None
        self.recorder.run_id = None
