"""The supervisor of one `runpool` host: follow the plan, feed the pool, keep leases.

    operators ─▶ PoolPlan (DB) ◀── wake-up or poll ── HostSupervisor.step()
                                                        ├─ _follow(plan): start / pause /
                                                        │   resume / scale / stop a WorkerPool
                                                        ├─ _heartbeat(): PoolHost row, Run
                                                        │   figures, counters to dashboards
                                                        └─ _housekeeping(): renew leases,
                                                            recover expired ones
    WorkerPool ── claim() ─▶ DbTaskSource (leases POs)     events ─▶ Recorder ─▶ DB + group

Every step is small and asks "go on?" (healthchecks' sendalerts style). Stopping a pool
can take the graceful timeout, so it runs in a helper thread while heartbeats go on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from django.db import close_old_connections, reset_queries
from django.db.models import Count, Q
from django.utils import timezone

from pool_core import HeadlessConfiguration, PoolStatus, ProfileManager, WorkerPool
from pool_core.errors import PoolError
from pool_core.po_folder import sweep_stale_work
from pool_core.reasons import SITE_FAILURE_PREFIXES, Pause, PauseReason
from pool_core.sites import SitePreset, load_presets
from poolsite.batches.models import Batch, PurchaseOrder, Run, Status
from poolsite.sessions.store import session_for, session_version
from poolsite.supervisor import leases
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.controls import settle_applied
from poolsite.supervisor.models import PoolHost, PoolPlan
from poolsite.supervisor.recording import Recorder
from poolsite.supervisor.task_source import DbTaskSource

log = logging.getLogger(__name__)
PROCESS_FN = "pool_core.processing:process_po"
RECOVER_EVERY = 5.0  # seconds between sweeps for expired leases
START_ATTEMPTS = 3  # consecutive failed pool starts before the plan pauses


def _site_answers(site: SitePreset) -> bool:
    """Whether the site's front page answers below HTTP 500 (a redirect counts)."""
    if site.check_url(site.base_url) is not None:
        return False  # never probe outside the allow-list

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(site.base_url + "/", timeout=5) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


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


@dataclass(frozen=True)
class HostOptions:
    """Everything a host needs; built from settings and command-line options."""

    output_root: Path
    pool_size: int = 4
    max_task_timeout: float = 300
    max_attempts: int = 3
    memory_soft_mb: float = 400
    memory_hard_mb: float = 800
    memory_check_seconds: float = 10.0  # a sample of 8 worker trees costs ~0.05 s of CPU
    lease_seconds: float = 60
    poll_seconds: float = 1.0
    stop_timeout: float = 30
    headless: bool = True
    browser_path: str = ""
    sites_dir: str = ""
    storage_state: str = ""  # a Playwright storage-state file for every worker
    base_profile: str = ""  # a signed-in Chromium user-data-dir to clone per worker
    site_base_urls: tuple[tuple[str, str], ...] = ()  # preset name -> base_url override
    process_fn: str = PROCESS_FN
    exit_when_idle: bool = False
    site_probe_seconds: float = 10.0  # outage pauses: how often to check the site


class HostSupervisor:
    """Run the plan on this host until asked to stop."""

    def __init__(self, options: HostOptions, broadcaster: Broadcaster) -> None:
        self.options = options
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.broadcaster = broadcaster
        self.lease = timedelta(seconds=options.lease_seconds)
        self.recorder = Recorder(host=self.name, output_root=options.output_root,
                                 broadcaster=broadcaster, lease=self.lease)
        self.recorder.memory_limit_mb = options.memory_hard_mb
        self.source = DbTaskSource(host=self.name, lease=self.lease,
                                   prefetch=options.pool_size, on_finish=self.recorder.finish)
        self.pool: WorkerPool | None = None
        self.run: Run | None = None
        self.stop_requested = threading.Event()
        self.wake = threading.Event()
        self._stopper: threading.Thread | None = None
        self._applied_version = -1
        self._last_renew = self._last_recover = self._last_site_probe = 0.0
        self._did_work = False
        self._session_version = 0  # of the session the pool was built on (replaced: restart)
        self._start_failures = 0
        self._presets = load_presets(
            (Path(options.sites_dir),) if options.sites_dir else ())

    # -- the loop ------------------------------------------------------------------------
    def serve(self) -> None:
        """Step until stop_requested, then stop the pool gracefully and sign off."""
        self._sign_on()
        try:
            while not self.stop_requested.is_set():
                try:
                    self.step()
                    # With DEBUG on, Django logs every query of a thread until a request
                    # ends, and a supervisor thread's requests never end: half of the
                    # ~4.5 MB a minute runpool grew by in tests/faults/test_dashboard_soak
                    # (the pool keeping every finished record was the other half). Each
                    # thread that writes drops its log after each piece of work.
                    reset_queries()
                    if self.options.exit_when_idle and self._idle_for_good():
                        log.info("nothing left to do: exiting (--exit-when-idle)")
                        break
                except Exception:  # the database may be away for a moment
                    log.exception("supervisor step failed; going on")
                    close_old_connections()
                self.wake.wait(self.options.poll_seconds)
                self.wake.clear()
        finally:
            self._sign_off()

    def request_stop(self) -> None:
        self.stop_requested.set()
        self.wake.set()

    def step(self) -> None:
        plan = PoolPlan.current()
        if not self._stopping():
            self._follow(plan)
        self._heartbeat(plan)
        self._housekeeping()

    # -- following the plan ------------------------------------------------------------------
    def _follow(self, plan: PoolPlan) -> None:
        pool = self.pool
        status = pool.status if pool is not None else PoolStatus.IDLE
        if pool is not None and status is PoolStatus.ERROR:
            self._recover_from_error(pool)
            return
        if plan.state == PoolPlan.State.RUNNING and plan.batch_id:
            self._follow_running(plan, pool, status)
        elif plan.state == PoolPlan.State.PAUSED:
            if pool is not None and status is PoolStatus.RUNNING:
                pool.pause_processing()
                self.recorder.note("paused", f"{self.name} paused: {plan.reason}")
            if pool is not None:
                self._hand_back_prefetched()
            self._maybe_auto_resume(plan)
        elif pool is not None and status in (PoolStatus.RUNNING, PoolStatus.PAUSED):
            self._stop_pool_async(immediate=plan.immediate_stop, why="stopped by an operator")
        elif pool is None and plan.state == PoolPlan.State.STOPPING:
            self._plan_to_idle(plan, "stopped")
        if pool is not None and status in (PoolStatus.RUNNING, PoolStatus.PAUSED):
            self._follow_size(pool, plan.pool_size)
        settle_applied(self.name, plan.version)
        self._applied_version = plan.version

    def _follow_running(self, plan: PoolPlan, pool: WorkerPool | None,
                        status: PoolStatus) -> None:
        if pool is None or status is PoolStatus.IDLE:
            if self.run is None or self.run.batch_id != plan.batch_id or self._has_work(plan):
                self._start_pool(plan)
            return
        assert self.run is not None
        if self.run.batch_id != plan.batch_id:
            self._stop_pool_async(immediate=False, why="another batch was started")
        elif status is PoolStatus.PAUSED:
            if plan.version != self._applied_version and self._session_replaced():
                # Its workers hold copies of the old session: start fresh ones on the new.
                self._stop_pool_async(immediate=False, why="the site session was replaced")
            elif plan.version != self._applied_version:
                self.source.set_paused(False)
                pool.resume_processing()  # an operator resumed
            else:
                self._propagate_auto_pause(plan, pool)
        elif status is PoolStatus.RUNNING and self._batch_finished(plan, pool):
            self._stop_pool_async(immediate=False, why="batch finished")
            self._plan_to_idle(plan, f"batch {plan.batch} finished")

    def _follow_size(self, pool: WorkerPool, size: int) -> None:
        if pool.get_status()["pool_size"] != size:
            pool.scale_workers(size, wait=False)
            self.source.set_prefetch(size)
            self.recorder.note("scaled", f"{self.name} scaling to {size} workers")

    def _start_pool(self, plan: PoolPlan) -> None:
        if plan.batch_id is None or not self._has_work(plan):
            return
        batch = Batch.objects.get(pk=plan.batch_id)
        pool = self._build_pool(batch, plan.pool_size)
        self.run = Run.objects.create(batch=batch, host=self.name, pool_size=plan.pool_size,
                                      state=Run.State.STARTING)
        self.recorder.run_id = self.run.pk
        self.source.set_batch(batch)
        self.source.set_paused(False)
        self.source.set_prefetch(plan.pool_size)
        self.pool = pool
        try:
            pool.start_processing(None, batch=batch.output_dir_name())
        except (PoolError, RuntimeError, ValueError, OSError) as exc:
            log.exception("could not start the pool")
            self._end_run(Run.State.CRASHED)
            self.pool = None
            self._release_held()
            self._start_failures += 1
            # A worker lost while starting is worth another try; a missing browser or a
            # full disk is not, and retrying forever would hide it from the operator.
            if self._start_failures >= START_ATTEMPTS:
                self._plan_pause(plan, f"pool could not start on {self.name}: {exc}")
            else:
                self.recorder.note("start_failed", f"{self.name} could not start its pool "
                                   f"(try {self._start_failures}): {exc}", "warning")
            return
        self._start_failures = 0
        Run.objects.filter(pk=self.run.pk).update(state=Run.State.RUNNING)
        self._did_work = True
        self.recorder.note("run_started", f"{self.name} started {plan.pool_size} workers "
                           f"on batch {batch}")

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
            output_root=str(options.output_root), site=self._site_for(batch),
            process_fn=options.process_fn, retry_limit=max(0, options.max_attempts - 1),
            memory_soft_limit_mb=options.memory_soft_mb,
            memory_hard_limit_mb=options.memory_hard_mb,
            memory_check_interval=options.memory_check_seconds,
            browser_path=options.browser_path or None, task_source=self.source,
            on_event=self.recorder.on_event,
            keep_records=False)  # the recorder stores them; a host runs for months

    def _site_for(self, batch: Batch) -> SitePreset | None:
        return site_for_batch(batch, self._presets, dict(self.options.site_base_urls))

    def _session_replaced(self) -> bool:
        """Whether the session this pool was built on has been replaced since."""
        options, batch = self.options, self.run.batch if self.run else None
        return batch is not None and self._session_version != session_version(
            batch.site_preset, options.storage_state, options.base_profile)

    def _propagate_auto_pause(self, plan: PoolPlan, pool: WorkerPool) -> None:
        """The pool paused itself (login wall, failing site): pause every host."""
        reason = pool.get_status().get("pause_reason") or "paused by the pool"
        if self._plan_pause(plan, reason):
            self.recorder.note("auto_paused", f"{self.name}: {reason}", "error")

    def _maybe_auto_resume(self, plan: PoolPlan) -> None:
        """After an outage pause, resume by itself once the site answers again.

        Only outage pauses (HTTP 5xx / network) qualify; a login wall or an operator's
        pause waits for a person.
        """
        pause = Pause.from_text(plan.reason)
        if pause is None or pause.reason is not PauseReason.SITE_FAILING or (
                plan.batch_id is None):
            return
        now = time.monotonic()
        if now - self._last_site_probe < self.options.site_probe_seconds:
            return
        self._last_site_probe = now
        site = self._site_for(Batch.objects.get(pk=plan.batch_id))
        if site is None or not site.base_url or not _site_answers(site):
            return
        resumed = PoolPlan.objects.filter(pk=plan.pk, version=plan.version,
                                          state=PoolPlan.State.PAUSED).update(
            state=PoolPlan.State.RUNNING, reason="", version=plan.version + 1,
            updated_at=timezone.now())
        if resumed:
            # POs that failed only because the site was down get their turn again.
            requeued = PurchaseOrder.objects.filter(
                Q(*(Q(reason__startswith=p) for p in SITE_FAILURE_PREFIXES), _connector=Q.OR),
                batch=plan.batch_id, status=Status.FAILED).update(
                status=Status.QUEUED, reason="", message="", attempts=0)
            self.source.refresh_queued_count()
            self.recorder.note("auto_resumed", f"{site.name} answers again: resumed, "
                               f"{requeued} PO(s) failed by the outage queued again")
            self.wake.set()

    def _recover_from_error(self, pool: WorkerPool) -> None:
        reason = pool.get_status().get("state_reason", "")
        log.error("pool in ERROR: %s", reason)
        self.recorder.note("pool_error", f"{self.name} pool error: {reason}", "error")
        self._release_held()
        pool.reset()
        self._end_run(Run.State.CRASHED)
        self.pool = None
        self._plan_pause(PoolPlan.current(), f"pool error on {self.name}: {reason}")

    # -- stopping ------------------------------------------------------------------------------
    def _stopping(self) -> bool:
        return self._stopper is not None and self._stopper.is_alive()

    def _stop_pool_async(self, *, immediate: bool, why: str) -> None:
        if self._stopping():
            return
        self._stopper = threading.Thread(target=self._stop_pool, args=(immediate, why),
                                         name="pool-stopper", daemon=True)
        self._stopper.start()

    def _stop_pool(self, immediate: bool, why: str) -> None:
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
            self._release_held()
            self._end_run(Run.State.FINISHED)
            self.recorder.note("run_stopped", f"{self.name} stopped its workers: {why}")
        except Exception:
            log.exception("stopping the pool failed")
        finally:
            self.pool = None
            close_old_connections()
            self.wake.set()

    def _hand_back_prefetched(self) -> None:
        """While paused, POs claimed ahead go back to the queue (other hosts may run)."""
        self.source.set_paused(True)
        held = [int(t.key) for t in self.source.drain()]
        if held:
            leases.release(self.name, held)

    def _release_held(self) -> None:
        self.source.set_batch(None)
        held = [int(t.key) for t in self.source.drain()]
        if held:
            leases.release(self.name, held)

    # -- the plan ---------------------------------------------------------------------------
    def _plan_pause(self, plan: PoolPlan, reason: str) -> bool:
        """Pause the plan for every host (once per plan version); True if we did."""
        updated = PoolPlan.objects.filter(pk=plan.pk, version=plan.version,
                                          state=PoolPlan.State.RUNNING).update(
            state=PoolPlan.State.PAUSED, reason=reason[:300], version=plan.version + 1,
            updated_at=timezone.now())
        if updated:
            self._applied_version = plan.version + 1
        return bool(updated)

    def _plan_to_idle(self, plan: PoolPlan, reason: str) -> None:
        PoolPlan.objects.filter(pk=plan.pk, version=plan.version).update(
            state=PoolPlan.State.IDLE, reason=reason[:300], version=plan.version + 1,
            updated_at=timezone.now())

    def _has_work(self, plan: PoolPlan) -> bool:
        return plan.batch_id is not None and PurchaseOrder.objects.filter(
            batch=plan.batch_id, status=Status.QUEUED).exists()

    def _batch_finished(self, plan: PoolPlan, pool: WorkerPool) -> bool:
        status = pool.get_status()
        if status["tasks_active"] or self.source.held():
            return False
        return not PurchaseOrder.objects.filter(
            batch=plan.batch_id, status__in=(Status.QUEUED, Status.RUNNING)).exists()

    def _idle_for_good(self) -> bool:
        if self.pool is not None or self._stopping():
            return False
        plan = PoolPlan.current()
        return plan.state != PoolPlan.State.RUNNING or not self._has_work(plan)

    # -- heartbeat and housekeeping ------------------------------------------------------------
    def _heartbeat(self, plan: PoolPlan) -> None:
        pool = self.pool
        status = pool.get_status() if pool is not None else None
        state = str(status["pool_status"]) if status else "IDLE"
        live = {int(d["id"]) for d in status["worker_details"]} if status else set()
        memory = {int(d["id"]): d for d in status["worker_details"]} if status else {}
        cards = []
        for card in self.recorder.card_snapshot(live):
            detail = memory.get(card["worker_id"], {})
            card.update(pid=detail.get("pid"), memory_mb=detail.get("memory_mb"),
                        done=detail.get("tasks_done", card.get("done", 0)),
                        restarts=detail.get("restarts", card.get("restarts", 0)),
                        memory_limit_mb=self.options.memory_hard_mb)
            if detail.get("state") == "stopping":
                card["state"] = "stopping"
            cards.append(card)
        reason = (status or {}).get("pause_reason") or (
            plan.reason if plan.state != PoolPlan.State.RUNNING else "")
        metrics = status["performance_metrics"] if status else {}
        progress = self._progress(plan, metrics)
        if pool is not None:
            self.source.refresh_queued_count(
                (plan.batch_id, progress["counts"].get(Status.QUEUED, 0))
                if plan.batch_id else None)
        beat = dict(hostname=socket.gethostname(), pid=os.getpid(), state=state,
                    reason=reason, batch_id=self.run.batch_id if self.run else None,
                    pool_size=status["pool_size"] if status else 0, workers=cards,
                    metrics=metrics, heartbeat_at=timezone.now(), stopped_at=None)
        # The row exists from sign-on; create it again only if someone deleted it.
        if not PoolHost.objects.filter(name=self.name).update(**beat):
            PoolHost.objects.create(name=self.name, **beat)
        self.broadcaster.pool({"host": self.name, "state": state, "reason": reason,
                               "plan_state": plan.state, "plan_version": plan.version,
                               "batch_id": plan.batch_id, **progress,
                               "sent_at": time.time() * 1000})
        if self.run is not None and status is not None:
            Run.objects.filter(pk=self.run.pk).update(
                heartbeat_at=timezone.now(), pool_size=status["pool_size"],
                pos_done=status["tasks_completed"] + status["tasks_failed"],
                pos_per_minute=metrics.get("throughput_per_minute"),
                p95_seconds=metrics.get("task_seconds_p95"), figures=metrics)

    def _progress(self, plan: PoolPlan, metrics: dict[str, Any]) -> dict[str, Any]:
        if not plan.batch_id:
            return {"counts": {}, "total": 0}
        counts = dict(PurchaseOrder.objects.filter(batch=plan.batch_id).order_by()
                      .values_list("status").annotate(n=Count("id")))
        total = sum(counts.values())
        pending = counts.get(Status.QUEUED, 0) + counts.get(Status.RUNNING, 0)
        rate = metrics.get("throughput_per_minute") or 0
        eta = round(pending / rate * 60) if rate and pending else None
        return {"counts": counts, "total": total, "throughput_per_min": rate,
                "eta_seconds": eta}

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_renew >= self.options.lease_seconds / 3:
            leases.renew(self.name, self.lease)
            self._last_renew = now
        if now - self._last_recover >= RECOVER_EVERY:
            self._last_recover = now
            leases.recover_expired(self.options.max_attempts)
            live = set(PoolHost.objects.filter(
                stopped_at=None, heartbeat_at__gte=timezone.now() - timedelta(seconds=15))
                .values_list("name", flat=True))
            leases.mark_crashed_runs(live | {self.name})

    def _end_run(self, state: str) -> None:
        if self.run is None:
            return
        Run.objects.filter(pk=self.run.pk).update(state=state, finished_at=timezone.now())
        self.run = None
        self.recorder.run_id = None

    # -- life of the host ---------------------------------------------------------------------
    def _sign_on(self) -> None:
        self._sweep_dead_local_hosts()
        PoolHost.objects.update_or_create(name=self.name, defaults=dict(
            hostname=socket.gethostname(), pid=os.getpid(), state="IDLE",
            heartbeat_at=timezone.now(), stopped_at=None, workers=[]))
        self._last_recover = 0.0
        self._housekeeping()
        self.recorder.note("host_started", f"supervisor {self.name} started")

    def _sweep_dead_local_hosts(self) -> None:
        """A supervisor of this machine that died (SIGKILL): take its work back now.

        Its POs go back to the queue at once (their attempt counted) instead of after the
        lease expiry, and its workers' Chromium trees and temp roots are removed.
        """
        report = ProfileManager().sweep_stale()
        stale_work = sweep_stale_work(self.options.output_root)
        log.info("swept leftovers of dead supervisors: %s; %d stale work folder(s)", report,
                 stale_work)
        here = socket.gethostname()
        for host in PoolHost.objects.filter(hostname=here, stopped_at=None).exclude(
                name=self.name):
            if psutil.pid_exists(host.pid) and host.pid != os.getpid():
                continue
            requeued, failed = leases.recover_host(host.name, self.options.max_attempts)
            PoolHost.objects.filter(pk=host.pk).update(stopped_at=timezone.now(), workers=[])
            leases.mark_crashed_runs(set(PoolHost.objects.filter(stopped_at=None)
                                         .exclude(pk=host.pk).values_list("name", flat=True)))
            self.recorder.note("host_recovered", f"{host.name} had died: {requeued} PO(s) "
                               f"re-queued, {failed} failed", "warning")

    def _sign_off(self) -> None:
        if self._stopper is not None:
            self._stopper.join(self.options.stop_timeout + 60)
        if self.pool is not None:
            self._stop_pool(immediate=False, why="runpool is shutting down")
        self._release_held()
        self.source.close()
        self.recorder.flush()
        self.recorder.note("host_stopped", f"supervisor {self.name} stopped")
        self.recorder.flush()
        self.recorder.close()
        PoolHost.objects.filter(name=self.name).update(
            state="IDLE", workers=[], stopped_at=timezone.now())
