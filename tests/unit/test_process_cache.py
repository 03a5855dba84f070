from tetrad.abi.ops import ExitHow
from tetrad.decode.process import ProcKey, decode
from tetrad.events.compact import event_line
from tetrad.events.model import exec_event, exit_event
from tetrad.timefmt import KtimeClock
from tetrad.pipeline import ProcessEvents
from tetrad.process.cache import ProcessCache, ProcfsEntry
from tetrad.process.exec_id import exec_id
from tests.unit.records import clone_bytes, exec_bytes, exit_bytes

NODE = "node1"


def clock():
    return KtimeClock(wall_ns=lambda: 1_700_000_000_000_000_000, mono_ns=lambda: 0)


def shell(cache, pid=100, ktime=1000, parent=(1, 10)):
    proc, _ = cache.on_exec(decode(exec_bytes(pid=pid, ktime=ktime, argv=("bash", "-i"),
                                              exe="/usr/bin/bash", cwd="/home/u", parent=parent,
                                              uid=1000)))
    return proc


def test_fork_then_exec_names_parent_and_flags_clone():
    cache = ProcessCache(NODE, clock())
    bash = shell(cache)
    misses_before = cache.misses    # bash's own parent (pid 1) is unknown here
    cache.on_clone(decode(clone_bytes(pid=101, ktime=2000, parent=(100, 1000))))
    child, parent = cache.on_exec(decode(exec_bytes(
        pid=101, ktime=3000, argv=("/bin/true", "x", "y z"), exe="/usr/bin/true",
        cwd="/tmp", parent=(100, 1000), flags=0x801)))
    assert parent is bash
    assert child.parent_exec_id == bash.exec_id == exec_id(NODE, 1000, 100)
    assert child.exec_id == exec_id(NODE, 3000, 101)
    assert child.flags == "execve clone"
    assert child.arguments == 'x "y z"'
    assert child.binary == "/usr/bin/true"
    assert cache.misses == misses_before


def test_exit_of_a_clone_that_never_exec_uses_parent_image():
    cache = ProcessCache(NODE, clock())
    bash = shell(cache)
    sub = cache.on_clone(decode(clone_bytes(pid=102, ktime=2000, parent=(100, 1000))))
    proc, parent = cache.on_exit(decode(exit_bytes(pid=102, ktime=2500, proc_ktime=2000,
                                                   parent=(100, 1000), how=1, code=3)))
    assert proc is sub and parent is bash
    assert proc.binary == "/usr/bin/bash" and proc.flags == "clone" and proc.exited


def test_grandchild_of_a_subshell_names_the_subshell():
    cache = ProcessCache(NODE, clock())
    shell(cache)
    sub = cache.on_clone(decode(clone_bytes(pid=102, ktime=2000, parent=(100, 1000))))
    cache.on_clone(decode(clone_bytes(pid=103, ktime=2100, parent=(102, 2000))))
    child, parent = cache.on_exec(decode(exec_bytes(pid=103, ktime=2200, exe="/usr/bin/true",
                                                    parent=(102, 2000))))
    assert parent is sub
    assert child.parent_exec_id == sub.exec_id


def test_parent_stays_known_after_it_exits():
    cache = ProcessCache(NODE, clock())
    bash = shell(cache)
    cache.on_clone(decode(clone_bytes(pid=101, ktime=2000, parent=(100, 1000))))
    cache.on_exit(decode(exit_bytes(pid=100, ktime=2100, proc_ktime=1000, parent=(1, 10))))
    _, parent = cache.on_exec(decode(exec_bytes(pid=101, ktime=3000, exe="/usr/bin/true",
                                                parent=(100, 1000))))
    assert parent is bash and parent.exited


def test_unknown_parent_counts_a_miss_but_keeps_its_exec_id():
    cache = ProcessCache(NODE, clock())
    child, parent = cache.on_exec(decode(exec_bytes(pid=5, ktime=50, exe="/x", parent=(4, 40))))
    assert parent is None
    assert child.parent_exec_id == exec_id(NODE, 40, 4)
    assert cache.misses == 1


def test_exit_of_unknown_process_is_flagged_miss():
    cache = ProcessCache(NODE, clock())
    proc, _ = cache.on_exit(decode(exit_bytes(pid=77, ktime=9, proc_ktime=0)))
    assert "miss" in proc.flags.split()


def test_procfs_entries_and_their_exit():
    cache = ProcessCache(NODE, clock())
    entry = ProcfsEntry(pid=300, ktime=5_000_000, start_time_ns=123, ppid=1, parent_ktime=0,
                        uid=0, gid=0, auid=0xFFFFFFFF, cwd="/", binary="/usr/sbin/cron",
                        argv=("/usr/sbin/cron", "-f"))
    proc = cache.add_procfs(entry)
    assert proc.flags == "procFS rootcwd"
    assert proc.parent_exec_id == ""     # pid 1's ktime was not known
    gone, _ = cache.on_exit(decode(exit_bytes(pid=300, ktime=9_000_000, proc_ktime=5_000_000)))
    assert gone is proc


def test_exec_without_parent_key_uses_the_held_image():
    cache = ProcessCache(NODE, clock())
    init = cache.add_procfs(ProcfsEntry(1, 10, 0, 0, 0, 0, 0, 0, "/", "/sbin/init", ("init",)))
    cache.add_procfs(ProcfsEntry(300, 20, 0, 1, 10, 0, 0, 0, "/", "/bin/sh", ("sh",)))
    _, parent = cache.on_exec(decode(exec_bytes(pid=300, ktime=30, exe="/bin/ls")))
    assert parent is init


def test_bounded_retired_entries_evicted_and_counted():
    cache = ProcessCache(NODE, clock(), capacity=10, retired_capacity=3)
    for pid in range(10, 20):
        cache.on_exec(decode(exec_bytes(pid=pid, ktime=pid, exe="/x")))
        cache.on_exit(decode(exit_bytes(pid=pid, ktime=pid + 1, proc_ktime=pid)))
    stats = cache.stats()
    assert stats.size == 3 and stats.evictions == 7
    assert cache.get(ProcKey(19, 19)) is not None
    assert cache.get(ProcKey(10, 10)) is None


def test_live_capacity_is_bounded_too():
    cache = ProcessCache(NODE, clock(), capacity=5, retired_capacity=5)
    for pid in range(1, 9):
        cache.on_exec(decode(exec_bytes(pid=pid, ktime=pid, exe="/x")))
    assert cache.stats().size == 5 and cache.stats().evictions == 3


def test_reexec_retires_old_image_for_children():
    cache = ProcessCache(NODE, clock())
    first = shell(cache)
    cache.on_clone(decode(clone_bytes(pid=150, ktime=1500, parent=(100, 1000))))
    second, _ = cache.on_exec(decode(exec_bytes(pid=100, ktime=2000, exe="/usr/bin/python3")))
    _, parent = cache.on_exec(decode(exec_bytes(pid=150, ktime=2500, exe="/x", parent=(100, 1000))))
    assert parent is first and cache.by_pid(100) is second


def test_pipeline_emits_exec_and_exit_events_with_tetragon_shape():
    cache = ProcessCache(NODE, clock())
    events = []
    pipe = ProcessEvents(cache, clock(), events.append)
    routes = {int(op): (dec, handler) for op, dec, handler in pipe.routes()}

    def feed(raw):
        dec, handler = routes[raw[0]]
        handler(dec(raw))

    feed(exec_bytes(pid=100, ktime=1000, argv=("bash",), exe="/usr/bin/bash", cwd="/"))
    feed(clone_bytes(pid=101, ktime=2000, parent=(100, 1000)))
    feed(exec_bytes(pid=101, ktime=3000, argv=("true", "a"), exe="/usr/bin/true", cwd="/tmp",
                    parent=(100, 1000), flags=0x801))
    feed(exit_bytes(pid=101, ktime=4000, proc_ktime=3000, parent=(100, 1000),
                    how=ExitHow.SIGNAL, code=9))
    kinds = [e.kind for e in events]
    assert kinds == ["process_exec", "process_exec", "process_exit"]
    d = events[1].to_dict(NODE)
    assert set(d) == {"process_exec", "node_name", "time"}
    assert d["process_exec"]["process"]["binary"] == "/usr/bin/true"
    assert d["process_exec"]["parent"]["binary"] == "/usr/bin/bash"
    x = events[2].to_dict(NODE)["process_exit"]
    assert x["signal"] == "SIGKILL" and "status" not in x
    assert event_line(events[1], NODE) == "🚀 process node1 /usr/bin/true a"
    assert event_line(events[2], NODE) == "💥 exit    node1 /usr/bin/true a SIGKILL"


def test_exit_status_zero_left_out_of_json_but_shown_compact():
    cache = ProcessCache(NODE, clock())
    proc = shell(cache)
    ev = exit_event(5, proc, None, status=0, signal_number=None)
    assert "status" not in ev.to_dict(NODE)["process_exit"]
    assert event_line(ev, NODE).endswith(" 0")
    ev = exit_event(5, proc, None, status=3, signal_number=None)
    assert ev.to_dict(NODE)["process_exit"]["status"] == 3


def test_exec_event_json_field_names():
    cache = ProcessCache(NODE, clock())
    proc = shell(cache)
    d = exec_event(1_700_000_000_000_000_000, proc, None).to_dict(NODE)
    p = d["process_exec"]["process"]
    assert list(p) == ["exec_id", "pid", "uid", "cwd", "binary", "arguments", "flags",
                       "start_time", "auid", "parent_exec_id", "tid"]
    assert d["time"] == "2023-11-14T22:13:20Z"          # protojson: no zero fraction


def test_event_json_text_equals_serialized_dict():
    import json
    cache = ProcessCache(NODE, clock())
    bash = shell(cache)
    child, parent = cache.on_exec(decode(exec_bytes(pid=101, ktime=3000, argv=("t", 'q"uote', "é"),
                                                    exe="/x", cwd="/", parent=(100, 1000))))
    for ev in (exec_event(7, child, parent), exit_event(9, child, parent, 3, None),
               exit_event(9, bash, None, None, 9)):
        assert json.loads(ev.to_json(NODE)) == ev.to_dict(NODE)


def test_enrichment_after_serialization_is_not_lost():
    cache = ProcessCache(NODE, clock())
    bash = shell(cache)
    bash.to_json()
    bash.to_dict()
    bash.set_container({"id": "abc", "runtime": "docker"})
    assert '"pod":{"container":{"id":"abc"}},"docker":"abc"' in bash.to_json()
    assert bash.to_dict()["docker"] == "abc"
