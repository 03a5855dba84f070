"""Detaching many tracepoint programs at once (bcc side).

Closing a perf event that runs a BPF program on a tracepoint waits for the
kernel's tracepoint unregistration to be safe (RCU grace periods): ~85 ms
per attachment here, one after the other in bcc's cleanup(), so the process
sensor's eleven tracepoints alone took 0.93 s to detach. Closed from
several threads at once the waits overlap (0.43 s for the same eleven).
Used when the daemon stops, so SIGTERM is answered in about a second; what
bcc's cleanup() does afterwards (maps, the module) is fast.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bcc import BPF
from bcc.libbcc import lib

MAX_THREADS = 16


def close_tracepoints(bpfs: list[BPF], fds: list[int] = ()) -> None:
    """Close every tracepoint attachment of these BPF objects, and these
    perf event descriptors, concurrently; bcc then no longer knows them (its
    cleanup() would close them again)."""
    fds = list(fds)
    for bpf in bpfs:
        fds += bpf.tracepoint_fds.values()
        bpf.tracepoint_fds.clear()
    if not fds:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(fds))) as pool:
        list(pool.map(lib.bpf_close_perf_event_fd, fds))
