"""Events for unit tests of sinks and filters (no kernel, no cache)."""

from tetrad.decode.process import ProcKey
from tetrad.events.model import Event
from tetrad.process.model import Process


def process(pid=100, binary="/usr/bin/curl", arguments="-I https://example.org", container=None):
    return Process(exec_id=f"id-{pid}", key=ProcKey(pid, 1), pid=pid, tid=pid, uid=0, gid=0,
                   auid=4294967295, cwd="/", binary=binary, arguments=arguments, flags="execve",
                   start_time_ns=1_700_000_000_000_000_000, container=container)


def event(kind="process_exec", pid=100, binary="/usr/bin/curl", policy_name="", parent=None,
          container=None, **fields):
    return Event(kind, 1_700_000_000_000_000_000 + pid, process(pid, binary, container=container),
                 parent=parent, fields=fields, policy_name=policy_name)
