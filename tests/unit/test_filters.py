import json

import pytest

from tetrad.filters import ExportFilter, Filter, FilterError, FilteredSink, RateLimit
from tests.unit.events import event, process


@pytest.mark.parametrize("allow,deny,kept", [
    ([], [], [1, 2, 3, 4, 5]),
    (['{"event_set": ["PROCESS_EXEC"]}'], [], [1, 2, 5]),
    (['{"event_set": ["PROCESS_EXEC"], "binary_regex": ["curl$"]}'], [], [1]),
    (['{"binary_regex": ["curl$"]}', '{"pid": [3]}'], [], [1, 3]),
    ([], ['{"binary_regex": ["^/usr/bin/"]}'], [4, 5]),
    (['{"event_set": ["PROCESS_EXEC", "PROCESS_KPROBE"]}'], ['{"pid": [2]}'], [1, 4, 5]),
    (['{"policy_names": ["p1"]}'], [], [4]),
    (['{"parent_binary_regex": ["bash"]}'], [], [2]),
    (['{"container_id": ["abc"]}'], [], [4]),
    (['{"container_name_regex": ["^we"]}'], [], [4]),
    # "" is the host: a container outside Kubernetes is in no namespace
    (['{"namespace": [""]}'], [], [1, 2, 3]),
    (['{"namespace": ["prod"]}'], [], [5]),
    (['{"namespace": ["", "prod"]}'], [], [1, 2, 3, 5]),
    (['{"pod_regex": ["^web-"]}'], [], [5]),
])
def test_allow_or_deny_wins(allow, deny, kept):
    bash = process(pid=50, binary="/usr/bin/bash")
    events = [event(pid=1, binary="/usr/bin/curl"),
              event(pid=2, binary="/usr/bin/ls", parent=bash),
              event("process_exit", pid=3, binary="/usr/bin/ls"),
              event("process_kprobe", pid=4, binary="/opt/x", policy_name="p1",
                    container={"id": "abc123", "name": "web", "runtime": "docker"}),
              event(pid=5, binary="/usr/sbin/nginx",
                    container={"id": "def456", "name": "nginx", "runtime": "containerd",
                               "pod": {"namespace": "prod", "name": "web-7d9"}})]
    f = ExportFilter(allow, deny)
    assert [e.process.pid for e in events if f.keep(e)] == kept


@pytest.mark.parametrize("text,message", [
    ("not json", "not a JSON object"),
    ('{"binaryRegex": ["x"]}', "unknown filter keys"),
    ('{"event_set": ["EXEC"]}', "event_set: unknown"),
    ('{"binary_regex": ["("]}', "bad regex"),
    ('{"pid": 3}', "must be a list"),
])
def test_bad_filters_say_what_is_wrong(text, message):
    with pytest.raises(FilterError, match=message):
        Filter.parse(text)


class Collect:
    name = "c"

    def __init__(self):
        self.lines = []

    def write(self, e):
        self.lines.append(json.loads(e.to_json("n")))

    def write_raw(self, line):
        self.lines.append(json.loads(line))

    def flush(self):
        pass

    def close(self):
        pass


def test_rate_limit_drops_past_the_limit_and_reports_once_a_minute():
    now = [0.0]
    sink = Collect()
    fs = FilteredSink(sink, ExportFilter([], []), RateLimit(3, clock=lambda: now[0]), "n")
    for pid in range(10):
        fs.write(event(pid=pid))
    assert len(sink.lines) == 3
    now[0] = 61
    fs.write(event(pid=99))
    info = [l for l in sink.lines if "rate_limit_info" in l]
    assert info == [{"rate_limit_info": {"number_of_dropped_process_events": "7"},
                     "node_name": "n", "time": info[0]["time"]}]
    assert sink.lines[-1]["process_exec"]["process"]["pid"] == 99
    assert fs.counters() == {"filtered": 0, "rate_limited": 7}


def test_rate_limit_zero_exports_nothing_and_minus_one_everything():
    assert not RateLimit(0).allow()
    unlimited = RateLimit(-1)
    assert all(unlimited.allow() for _ in range(10_000))
