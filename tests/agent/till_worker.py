"""A till in its own process for crash tests: JSON requests on stdin, answers on stdout.

`KOPILKA_TEST_PAUSE=before:N` (or `after:N`) stops the process just before (after) the N-th
COMMIT after it printed READY, and prints PAUSED, so the test can SIGKILL it right there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from agent._clock import SystemClock
from agent._errors import TillError
from agent._models import ConfirmRequest, RefundRequest, ReserveRequest, VoidRequest
from agent._runtime import build_till
from protocol import IdentifierRejected

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_settings, seed_customer

OPS = {
    "reserve": ("reserve", ReserveRequest),
    "confirm": ("confirm", ConfirmRequest),
    "void": ("void", VoidRequest),
    "refund": ("refund", RefundRequest),
}


def main() -> None:
    data_dir = Path(sys.argv[1])
    pause = os.environ.get("KOPILKA_TEST_PAUSE")
    ready = [False]
    commits = [0]

    def hook(stage: str) -> None:
        if not ready[0] or pause is None:
            return
        phase, number = pause.split(":")
        if stage == phase:
            commits[0] += 1
            if commits[0] == int(number):
                print("PAUSED", flush=True)
                time.sleep(3600)

    clock = SystemClock()
    fresh = not (data_dir / "till.db").exists()
    till = build_till(make_settings(data_dir), clock=clock, commit_hook=hook)
    if fresh:
        seed_customer(till, clock, points=100_000)
    ready[0] = True
    print("READY", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        method, model = OPS[request["op"]]
        try:
            result = getattr(till, method)(model.model_validate(request["body"]))
            answer = {"ok": True, "result": json.loads(result.model_dump_json())}
        except (TillError, IdentifierRejected) as error:
            answer = {"ok": False, "code": error.code}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
