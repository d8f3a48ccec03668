"""A hosting process for fault tests: runs a pool until signalled or killed.

    python -m tests.pool_core.host_script ROOTS STATE_JSON OUTPUT BATCH_JSON
"""

from __future__ import annotations

import json
import sys
import time

from pool_core import PoolStatus, ProfileManager, WorkerPool


def main(argv: list[str]) -> int:
    roots, state, output, batch = argv
    pool = WorkerPool(2, profile_manager=ProfileManager(temp_dir=roots, storage_state=state),
                      output_root=output, max_task_timeout=60, nav_timeout=60)
    pool.install_signal_handlers(stop_timeout=5)
    with open(batch, encoding="utf-8") as fh:
        pool.start_processing(json.load(fh))
    print("RUNNING", flush=True)
    deadline = time.monotonic() + 120
    while pool.status not in (PoolStatus.STOPPING, PoolStatus.IDLE):  # a signal stops it
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.05)
    pool.wait_for_status(PoolStatus.IDLE, 60)
    successful, failed, perf = pool.get_results()
    print("STOPPED", pool.status, successful, failed, perf["cancelled"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
