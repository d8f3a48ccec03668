"""process_po as the WorkerPool's job: the demo's special batch ends as the ground truth says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pool_core import WorkerPool
from pool_core.state import PoolStatus
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

PROCESS_FN = "pool_core.processing:process_po"


@pytest.mark.slow
def test_the_special_batch_through_the_pool_matches_the_ground_truth(
        make_pool: Callable[..., WorkerPool], site: DemoSite, tmp_path: Path) -> None:
    pool = make_pool(2, process_fn=PROCESS_FN, download_timeout=2.0)
    batch = catalog.special_batch(site.base_url)
    assert pool.start_processing(batch, batch="specials")
    assert pool.wait_until_done(timeout=90)
    records = {r.po_number: r for r in pool.get_records()}
    assert set(records) == {row["po_number"] for row in batch}
    for number, record in records.items():
        truth = catalog.expected(number)
        assert (str(record.status), record.reason) == (truth.status, truth.reason), (
            number, record.message)
        got = sorted(f.sha256 for f in record.files if f.source in ("po", "requisition"))
        assert got == sorted(a.sha256 for a in truth.attachments), number
        for record_file in record.files:
            assert (tmp_path / "out" / record_file.path).stat().st_size == record_file.size
    assert records[catalog.STALL_ONCE].attempts == 2  # timed out once, then succeeded
    assert records[catalog.RATE_LIMITED].attempts == catalog.RATE_LIMIT_HITS + 1
    assert site.canary_hits == 0


@pytest.mark.slow
def test_a_pool_without_a_session_pauses_on_the_login_wall(
        make_pool: Callable[..., WorkerPool], site: DemoSite) -> None:
    pool = make_pool(1, signed_in=False, process_fn=PROCESS_FN)
    assert pool.start_processing([catalog.po_dict(site.base_url, catalog.ONE_PDF),
                                  catalog.po_dict(site.base_url, catalog.SEVERAL)])
    assert pool.wait_for_status(PoolStatus.PAUSED, timeout=60)
    assert pool.get_status()["pause_reason"].startswith("LOGIN_REQUIRED")
    # The PO that met the wall waits for the resume instead of failing.
    assert all(r.status is None for r in pool.get_records())
    assert site.hits("/attachments/") == 0
