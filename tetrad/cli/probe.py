"""`tetrad probe`: the kernel features tetrad relies on, each found by trying it."""

from __future__ import annotations

import json
import os
import time

from tetrad.bpf import features
from tetrad.bpf.mounts import ensure_kernel_mounts


def run(args) -> int:
    if os.geteuid() != 0:
        print("tetrad probe loads tiny BPF programs to find out what works: run it as root")
        return 1
    ensure_kernel_mounts()
    started = time.monotonic()
    results = features.probe_all()
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"kernel": os.uname().release,
                          "features": [{"name": f.name, "available": f.available, "detail": f.detail}
                                       for f in results]}, indent=2))
        return 0
    print(f"kernel {os.uname().release}")
    width = max(len(f.name) for f in results)
    for f in results:
        print(f"  {f.name:<{width}}  {'yes' if f.available else 'no '}  {f.detail}")
    print(f"probed in {elapsed:.2f}s; {features.summary_line()}")
    return 0
