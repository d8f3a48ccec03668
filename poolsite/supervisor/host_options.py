"""What one `runpool` host is told: HostOptions, built from settings and the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROCESS_FN = "pool_core.processing:process_po"


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
