"""The warm-up compiles (or loads) every kernel of the hot path before the first batch."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json
from streamproc.decode import eventscan
from streamproc.decode import keys
from sampler import kernels
from streamproc.settings import Settings
from streamproc.worker.warmup import warm_up

names = {
    "scan_events": eventscan.scan_events, "label_codes": eventscan.label_codes,
    "gather_numbers": eventscan.gather_numbers, "span_keys": keys._hash_spans,
    "reference ids": keys._hash_ids,
    "coordinates": keys._hash_coords, "update_kernel": kernels.update_kernel,
    "relayout_kernel": kernels.relayout_kernel,
}
before = {k: len(f.signatures) for k, f in names.items()}
seconds = warm_up(Settings().decode, Settings().sampler)
after = {k: len(f.signatures) for k, f in names.items()}
print(json.dumps({"before": before, "after": after, "seconds": seconds}))
"""


def test_warm_up_loads_every_hot_kernel_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(v == 0 for v in res["before"].values()), res["before"]  # nothing loaded on import
    missing = [k for k, v in res["after"].items() if v == 0]
    assert not missing, f"kernels the warm-up did not reach: {missing}"
    assert res["seconds"] > 0
