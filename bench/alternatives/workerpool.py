"""(c) poolsite's own engine: WorkerPool with the real per-PO job, in the runners' shape.

One worker process per unit of concurrency, each with its own Playwright driver and
Chromium on its own temp root, seeded with the demo session's storage state; the job
is `pool_core.processing:process_po` against the `demo` site preset (the coupa shape)
or `demo-simple` (`--shape simple`). Everything else
is WorkerPool's defaults, as a user would get them. Documents land under
`--out/<batch>/<supplier>/<po_number>/`.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from bench.alternatives.po_files import POReport, batch_load, report_write, runner_arguments
from pool_core import ProfileManager, WorkerPool
from pool_core.sites import load_preset

PROCESS_FN = "pool_core.processing:process_po"
DONE_TIMEOUT_S = 1800.0


def main() -> None:
    args = runner_arguments(__doc__ or "")
    started = time.monotonic()
    logging.basicConfig(level=logging.WARNING)
    batch = batch_load(args.batch)
    first = urlsplit(batch[0]["url"])
    preset = "demo" if args.shape == "coupa" else "demo-simple"
    site = load_preset(preset).with_base_url(f"{first.scheme}://{first.netloc}")
    pool = WorkerPool(
        args.concurrency,
        profile_manager=ProfileManager(storage_state=str(args.storage_state)),
        output_root=str(args.out), site=site, process_fn=PROCESS_FN,
        browser_path=args.browser)
    pool.start_processing(batch, batch="bench")  # returns once every worker is ready
    startup_s = time.monotonic() - started
    try:
        pool.wait_until_done(timeout=DONE_TIMEOUT_S)
    finally:
        records = pool.get_records()
        pool.stop_processing(timeout=30)
        reports = [POReport(r.po_number, "ok" if r.is_success else "failed",
                            files=[{"name": f.name, "size": f.size, "sha256": f.sha256}
                                   for f in r.files],
                            error=f"{r.reason}: {r.message}" if r.reason else "",
                            seconds=r.total_seconds) for r in records]
        report_write(args.report, reports, started, startup_s=startup_s,
                     attempts={r.po_number: r.attempts for r in records if r.attempts > 1})


if __name__ == "__main__":
    main()
