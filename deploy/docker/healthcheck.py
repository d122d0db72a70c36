"""Health check of a Homeward container: GET http://127.0.0.1:<port><path> (default /healthz).

The service is the one named by ``HOMEWARD_SERVICE``, else the one PID 1 runs
(``python -m homeward.<service>``); its port is its settings' ``http_port``, read the way
the service reads it, so ``HOMEWARD_<SERVICE>_HTTP_PORT`` is honoured. A container that
runs no service (the init step, the CLI) has nothing to check and is reported healthy.

    python /app/bin/healthcheck.py            # liveness, as the image's HEALTHCHECK
    python /app/bin/healthcheck.py /readyz    # readiness: Kafka and PostgreSQL reachable
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import urllib.request
from pathlib import Path

# The same list as homeward.contracts.topics.SERVICES (tests/test_compose.py checks).
SERVICES = ("ingress", "referrals", "placements", "budget", "notifications")


def current_service() -> str | None:
    named = os.environ.get("HOMEWARD_SERVICE", "").strip()
    if named:
        return named
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    match = re.search(r"homeward[.-](" + "|".join(SERVICES) + r")\b", cmdline)
    return match.group(1) if match else None


def http_port(service: str) -> int:
    from homeward.kit.settings import ServiceSettings

    module = importlib.import_module(f"homeward.{service}.settings")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings:
            return int(value().http_port)
    raise LookupError(f"no ServiceSettings subclass in homeward.{service}.settings")


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    service = current_service()
    if service is None:
        return 0
    url = f"http://127.0.0.1:{http_port(service)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = 200 <= response.status < 300
    except Exception as exc:
        print(f"{service}: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
