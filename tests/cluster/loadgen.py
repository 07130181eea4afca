"""In-cluster load: threads posting predictions to the predictor Service for a fixed time.

Runs inside the cluster (a Job with the predictor image, standard library only), because a
`kubectl port-forward` sticks to one pod: only traffic through the Service spreads over the HPA's
new replicas and survives a rolling update. Each request opens a new connection, so kube-proxy
picks an endpoint per request, as it would for many clients. Prints one JSON summary line.

    python loadgen.py URL SECONDS THREADS BODY_FILE
"""

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter


def worker(url: str, body: bytes, deadline: float, counts: Counter, lock: threading.Lock) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = response.status == 200 and json.load(response).get("predictions")
                outcome = "ok" if ok else f"bad body ({response.status})"
        except urllib.error.HTTPError as exc:
            outcome = f"HTTP {exc.code}"
        except OSError as exc:  # refused, reset, timeout: what a rollout without draining causes
            outcome = type(exc).__name__
        with lock:
            counts[outcome] += 1


def main() -> None:
    url, seconds, threads, body_file = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(body_file, "rb") as f:
        body = f.read()
    counts: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    pool = [threading.Thread(target=worker, args=(url, body, deadline, counts, lock)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ok = counts.pop("ok", 0)
    print(json.dumps({"requests": ok + sum(counts.values()), "ok": ok, "failed": dict(counts)}), flush=True)


if __name__ == "__main__":
    main()
