"""Container health probe for the ghpo images: exit 0 when a URL answers HTTP 200, else 1.

Used by the images' HEALTHCHECK and by docker-compose.yml (`healthcheck.py http://127.0.0.1:8101/readyz`).
Standard library only, so it runs in any image stage and costs no import of ghpo. It deliberately does not
retry: the container runtime's interval/retries settings do that.
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GHPO_HEALTHCHECK_URL", DEFAULT_URL)
    try:
        with urllib.request.urlopen(
            url, timeout=float(os.environ.get("GHPO_HEALTHCHECK_TIMEOUT_S", "4"))
        ) as r:
            ok = r.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
