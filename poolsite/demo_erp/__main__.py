"""Run the demo procurement site on its own: python -m poolsite.demo_erp --port 8001."""

from __future__ import annotations

import argparse
import time

from poolsite.demo_erp.server import DemoSite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per page")
    parser.add_argument("--shape", choices=("simple", "coupa"), default="coupa",
                        help="page shape: simple links, or a real Coupa page's structure")
    args = parser.parse_args()
    site = DemoSite(host=args.host, port=args.port, latency=args.latency,
                    shape=args.shape).start()
    print(f"demo procurement site on {site.base_url} (sign in: {site.signin_url()})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        site.stop()


if __name__ == "__main__":
    main()
