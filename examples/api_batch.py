#!/usr/bin/env python3
"""Upload a PO file to poolsite, run it, wait, and download the results and documents.

    POOLSITE_URL=http://127.0.0.1:8000 POOLSITE_TOKEN=pst_... \\
        python examples/api_batch.py weekly-pos.csv --site "Demo site" --out results/

Only the standard library. Exits 0 when the batch finished (whatever each PO's status),
1 on an API error (its message is printed), 2 on a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> bytes:
        request = urllib.request.Request(f"{self.url}/api{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        while True:
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as error:
                if error.code == 429:  # rate-limited: wait as told, then again
                    time.sleep(int(error.headers.get("Retry-After", "5")))
                    continue
                detail = error.read().decode(errors="replace")
                raise SystemExit(f"{method} {path}: HTTP {error.code}: {detail}") from None

    def json(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        return json.loads(self.call(method, path, body))

    def upload(self, path: Path, site: str, name: str = "") -> Any:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                 f"{value}\r\n".encode() for key, value in (("site", site), ("name", name))]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{path.name}"\r\nContent-Type: application/octet-stream'
                     "\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return json.loads(self.call("POST", "/batches/upload", body,
                                    f"multipart/form-data; boundary={boundary}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, help="CSV or XLSX, one row per PO")
    parser.add_argument("--site", required=True, help="the configured site's name")
    parser.add_argument("--name", default="", help="batch name (default: the file's)")
    parser.add_argument("--size", type=int, default=None, help="pool size (1-8)")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to save")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")
    parser.add_argument("--url", default=os.getenv("POOLSITE_URL", "http://127.0.0.1:8000"))
    args = parser.parse_args(argv)
    token = os.getenv("POOLSITE_TOKEN", "")
    if not token:
        parser.error("set POOLSITE_TOKEN (create one on the app's API tokens page)")
    api = Api(args.url, token)

    batch = api.upload(args.file, args.site, args.name)
    print(f"batch #{batch['id']} {batch['name']!r}: {batch['po_count']} POs", flush=True)
    started = api.json("POST", "/pool/start", {"batch": batch["id"], "size": args.size})
    print(started["message"], flush=True)

    deadline = time.monotonic() + args.timeout
    while True:
        summary = api.json("GET", f"/batches/{batch['id']}")["summary"]
        headline = api.json("GET", "/pool/status")["headline"]  # e.g. paused, and why
        print(f"  {summary['total'] - summary['pending']}/{summary['total']} done, "
              f"{summary['failed']} not succeeded; pool {headline['state']} "
              f"{headline['reason']}".rstrip(), flush=True)
        if summary["pending"] == 0:
            break
        if time.monotonic() > deadline:
            print("timed out waiting for the batch", file=sys.stderr)
            return 2
        time.sleep(5)

    args.out.mkdir(parents=True, exist_ok=True)
    for link, name in (("results_csv", "results.csv"), ("documents_zip", "documents.zip")):
        target = args.out / f"batch-{batch['id']}-{name}"
        target.write_bytes(api.call("GET", batch[link].removeprefix("/api")))
        print(f"saved {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
