"""The supervisor of one `runpool` host: follow the plan, feed the pool, keep leases.

    operators ─▶ PoolPlan (DB) ◀── wake-up or poll ── HostSupervisor.step()
                                                        ├─ _follow(plan): start / pause /
                                                        │   resume / scale / stop the pool
                                                        │   (PoolRunner, pool_lifecycle.py;
                                                        │   OutageProbe, outage.py)
                                                        └─ HostUpkeep (heartbeat.py): the
                                                            heartbeat, renewing leases,
                                                            recovering expired ones
    batch finished, auto-pause, crash loop ─▶ Notifier (notifications/sender.py): its own
                                              thread claims each event once and sends it
    WorkerPool ── claim() ─▶ DbTaskSource (leases POs)     events ─▶ Recorder ─▶ DB + group

This module holds the loop and the following of the plan: what this host's pool should
be doing given the plan, and the plan's own moves a host makes (pause every host when
its pool paused itself, go idle when the batch is done), each through
`PoolPlan.transition`. Every step is small and asks "go on?" (healthchecks' sendalerts
style).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from django.db import close_old_connections, reset_queries
from django.utils import timezone

from pool_core import PoolStatus, WorkerPool
from poolsite.batches.models import Batch, PurchaseOrder, Run, Status
from poolsite.notifications.crash_loop import CrashLoopWatch
from poolsite.notifications.daily import DailySummaryClock
from poolsite.notifications.sender import Notifier
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.controls import settle_applied
from poolsite.supervisor.heartbeat import HostUpkeep
from poolsite.supervisor.host_options import PROCESS_FN, HostOptions
from poolsite.supervisor.models import PoolHost, PoolPlan
from poolsite.supervisor.outage import OutageProbe
from poolsite.supervisor.pool_lifecycle import PoolRunner
from poolsite.supervisor.recording import Recorder
from poolsite.supervisor.task_source import DbTaskSource

__all__ = ["PROCESS_FN", "HostOptions", "HostSupervisor"]
log = logging.getLogger(__name__)


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
        self.stop_requested = threading.Event()
        self.wake = threading.Event()
        self.runner = PoolRunner(name=self.name, options=options, source=self.source,
                                 recorder=self.recorder, wake=self.wake)
        self.upkeep = HostUpkeep(name=self.name, options=options, recorder=self.recorder,
                                 broadcaster=broadcaster, source=self.source)
        self.outage = OutageProbe(options.site_probe_seconds)
        # Operators are told (batch finished, auto-pause, crash loop) by its own thread.
        self.notifier = Notifier(self.name)
        self.crash_watch = CrashLoopWatch()
        self.daily = DailySummaryClock()
        self._applied_version = -1

    @property
    def pool(self) -> WorkerPool | None:
        return self.runner.pool

    @property
    def run(self) -> Run | None:
        return self.runner.run

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
        if not self.runner.stopping():
            self._follow(plan)
        self._watch_crashes()
        day = self.daily.due()
        if day is not None:
            self.notifier.daily_summary(day)
        self.upkeep.beat(plan, self.runner.pool, self.runner.run)
        self.upkeep.housekeeping()

    # -- following the plan ------------------------------------------------------------------
    def _follow(self, plan: PoolPlan) -> None:
        runner, pool = self.runner, self.runner.pool
        status = pool.status if pool is not None else PoolStatus.IDLE
        if pool is not None and status is PoolStatus.ERROR:
            run = runner.run
            reason = runner.recover_from_error(pool)
            current, crash_loop = PoolPlan.current(), CrashLoopWatch.is_crash_loop(reason)
            if self._plan_pause(current, f"pool error on {self.name}: {reason}",
                                notify=not crash_loop) and crash_loop:
                self.notifier.crash_loop(reason, current.batch_id, run.pk if run else None)
            return
        if plan.state == PoolPlan.State.RUNNING and plan.batch_id:
            self._follow_running(plan, pool, status)
        elif plan.state == PoolPlan.State.PAUSED:
            if pool is not None and status is PoolStatus.RUNNING:
                pool.pause_processing()
                self.recorder.note("paused", f"{self.name} paused: {plan.reason}")
            if pool is not None:
                runner.hand_back_prefetched()
            self._maybe_auto_resume(plan)
        elif pool is not None and status in (PoolStatus.RUNNING, PoolStatus.PAUSED):
            runner.stop_async(immediate=plan.immediate_stop, why="stopped by an operator")
        elif pool is None and plan.state == PoolPlan.State.STOPPING:
            self._plan_to_idle(plan, "stopped")
        if pool is not None and status in (PoolStatus.RUNNING, PoolStatus.PAUSED):
            self._follow_size(pool, plan.pool_size)
        settle_applied(self.name, plan.version)
        self._applied_version = plan.version

    def _follow_running(self, plan: PoolPlan, pool: WorkerPool | None,
                        status: PoolStatus) -> None:
        runner, run = self.runner, self.runner.run
        if pool is None or status is PoolStatus.IDLE:
            if run is None or run.batch_id != plan.batch_id or self._has_work(plan):
                self._start_pool(plan)
            return
        assert run is not None
        if run.batch_id != plan.batch_id:
            runner.stop_async(immediate=False, why="another batch was started")
        elif status is PoolStatus.PAUSED:
            if plan.version != self._applied_version and runner.session_replaced():
                # Its workers hold copies of the old session: start fresh ones on the new.
                runner.stop_async(immediate=False, why="the site session was replaced")
            elif plan.version != self._applied_version:
                self.source.set_paused(False)
                pool.resume_processing()  # an operator resumed
            else:
                self._propagate_auto_pause(plan, pool)
        elif status is PoolStatus.RUNNING and self._batch_finished(plan, pool):
            runner.stop_async(immediate=False, why="batch finished")
            if self._plan_to_idle(plan, f"batch {plan.batch} finished"):
                self.notifier.batch_finished(run.batch_id, plan.version)

    def _follow_size(self, pool: WorkerPool, size: int) -> None:
        if pool.get_status()["pool_size"] != size:
            pool.scale_workers(size, wait=False)
            self.source.set_prefetch(size)
            self.recorder.note("scaled", f"{self.name} scaling to {size} workers")

    def _start_pool(self, plan: PoolPlan) -> None:
        if plan.batch_id is None or not self._has_work(plan):
            return
        refusal = self.runner.start(Batch.objects.get(pk=plan.batch_id), plan.pool_size)
        if refusal:
            self._plan_pause(plan, refusal)

    def _propagate_auto_pause(self, plan: PoolPlan, pool: WorkerPool) -> None:
        """The pool paused itself (login wall, failing site): pause every host."""
        reason = pool.get_status().get("pause_reason") or "paused by the pool"
        if self._plan_pause(plan, reason):
            self.recorder.note("auto_paused", f"{self.name}: {reason}", "error")

    def _maybe_auto_resume(self, plan: PoolPlan) -> None:
        """After an outage pause, resume by itself once the site answers again."""
        resumed = self.outage.maybe_resume(
            plan, lambda batch_id: self.runner.site_for(Batch.objects.get(pk=batch_id)))
        if resumed is None:
            return
        site, requeued = resumed
        self.source.refresh_queued_count()
        self.recorder.note("auto_resumed", f"{site.name} answers again: resumed, "
                           f"{requeued} PO(s) failed by the outage queued again")
        self.wake.set()

    # -- the plan ---------------------------------------------------------------------------
    def _plan_pause(self, plan: PoolPlan, reason: str, *, notify: bool = True) -> bool:
        """Pause the plan for every host (once per plan version); True if we did.

        The pool paused itself, or could not go on: operators are told (`notify`).
        """
        paused = PoolPlan.transition(from_version=plan.version,
                                     from_states=(PoolPlan.State.RUNNING,),
                                     state=PoolPlan.State.PAUSED, reason=reason)
        if paused is not None:
            self._applied_version = paused.version
            if notify:
                self.notifier.auto_paused(paused.reason, paused.batch_id, paused.version)
        return paused is not None

    def _plan_to_idle(self, plan: PoolPlan, reason: str) -> bool:
        return PoolPlan.transition(from_version=plan.version, state=PoolPlan.State.IDLE,
                                   reason=reason) is not None

    def _watch_crashes(self) -> None:
        """Tell operators once per run when its workers keep crashing and restarting."""
        pool, run = self.runner.pool, self.runner.run
        if pool is None or run is None or not self.crash_watch.due():
            return
        try:
            restarts = sum(int(d.get("restarts") or 0)
                           for d in pool.get_status()["worker_details"])
        except Exception:  # a pool going away: the heartbeat says what matters
            log.exception("could not count worker restarts")
            return
        seen = self.crash_watch.observe(run.pk, restarts)
        if seen:
            self.recorder.note("crash_loop", f"{self.name}: workers crash again and again "
                               f"({seen})", "error")
            self.notifier.crash_loop(seen, run.batch_id, run.pk)

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
        if self.runner.pool is not None or self.runner.stopping():
            return False
        plan = PoolPlan.current()
        return plan.state != PoolPlan.State.RUNNING or not self._has_work(plan)

    # -- life of the host ---------------------------------------------------------------------
    def _sign_on(self) -> None:
        self.notifier.start()
        self.upkeep.sweep_dead_local_hosts()
        PoolHost.objects.update_or_create(name=self.name, defaults=dict(
            hostname=socket.gethostname(), pid=os.getpid(), state="IDLE",
            heartbeat_at=timezone.now(), stopped_at=None, workers=[]))
        self.upkeep.housekeeping(now=True)
        self.recorder.note("host_started", f"supervisor {self.name} started")

    def _sign_off(self) -> None:
        self.runner.join_stopper(self.options.stop_timeout + 60)
        if self.runner.pool is not None:
            self.runner.stop(immediate=False, why="runpool is shutting down")
        self.runner.release_held()
        self.source.close()
        self.recorder.flush()
        self.recorder.note("host_stopped", f"supervisor {self.name} stopped")
        self.recorder.flush()
        self.recorder.close()
        PoolHost.objects.filter(name=self.name).update(
            state="IDLE", workers=[], stopped_at=timezone.now())
        self.notifier.close()
