"""tetrad's JSON export against Tetragon's schema (tests/tetragon_schema.py).

Each kind of event tetrad makes, built the way the daemon builds it, is
checked here; tests/conftest.py also checks every line any test makes, and
the kernel harness every line of the real daemon's export file. The
checker itself is tested first: it must refuse what a strict protobuf
consumer (or protojson's marshaller) would not write.
"""

import json

import pytest

from tests import tetragon_schema
from tests.unit.events import event, process
from tetrad.events.model import exec_event, exit_event
from tetrad.filters import rate_limit_info

# A Tetragon exec line as its exporter writes one for a Kubernetes pod.
TETRAGON_EXEC = {
    "process_exec": {
        "process": {
            "exec_id": "a2luZDozNjI5MjY3NjQzNjAwOjE5MzE=", "pid": 1931, "uid": 0, "cwd": "/",
            "binary": "/usr/bin/curl", "arguments": "-s example.org", "flags": "execve clone",
            "start_time": "2023-10-06T22:03:57.700327580Z", "auid": 4294967295,
            "pod": {"namespace": "default", "name": "xwing", "uid": "2ac8e1b2",
                    "container": {"id": "containerd://4d1e3c", "name": "spaceship",
                                  "image": {"id": "docker.io/tgraf/netperf@sha256:8e86f744",
                                            "name": "docker.io/tgraf/netperf:latest"},
                                  "start_time": "2023-10-06T21:52:41Z", "pid": 13},
                    "pod_labels": {"app.kubernetes.io/name": "xwing"},
                    "workload": "xwing", "workload_kind": "Pod"},
            "docker": "4d1e3c", "parent_exec_id": "a2luZDozNjI5MjY1NjA5MDc5OjE5MjY=",
            "cap": {"permitted": ["CAP_CHOWN", "DAC_OVERRIDE"], "effective": ["CAP_SYS_ADMIN"]},
            "ns": {"uts": {"inum": 4026531838, "is_host": True}, "mnt": {"inum": 4026532642}},
            "tid": 1931, "in_init_tree": False},
        "parent": {"exec_id": "a2luZDozNjI5MjY1NjA5MDc5OjE5MjY=", "pid": 1926, "uid": 0,
                   "start_time": "2023-10-06T22:03:55.666Z", "auid": 0, "tid": 1926}},
    "node_name": "kind-control-plane", "time": "2023-10-06T22:03:57.700326678Z"}


def kprobe(*args, **fields) -> dict:
    body = {"process": {"exec_id": "x", "pid": 1, "start_time": "2023-01-01T00:00:00Z"},
            "function_name": "__x64_sys_write", "action": "KPROBE_ACTION_POST", **fields}
    if args:
        body["args"] = list(args)
    return {"process_kprobe": body, "node_name": "n", "time": "2023-01-01T00:00:00.500Z"}


def test_tetragons_own_line_conforms():
    assert tetragon_schema.problems_of(TETRAGON_EXEC) == []
    assert tetragon_schema.problems_of(kprobe({"size_arg": "0"}, {"int_arg": 0}, {"string_arg": ""},
                                              {"bytes_arg": ""}, {"bpf_cmd_arg": "BPF_MAP_CREATE"},
                                              return_action="KPROBE_ACTION_SIGKILL")) == []


@pytest.mark.parametrize("record,found", [
    ({"process_exec": {"process": {"exec_id": "x", "container": {"id": "abc"}}}, "node_name": "n"},
     "process_exec.process.container: Process has no field 'container'"),
    (kprobe(monitor_action="KPROBE_ACTION_SIGKILL"),
     "process_kprobe.monitor_action: ProcessKprobe has no field 'monitor_action'"),
    (kprobe({"size_arg": 4096}), "process_kprobe.args[0].size_arg: a uint64 is a JSON string"),
    (kprobe({"long_arg": "1.5"}), "process_kprobe.args[0].long_arg: a int64 is a JSON string"),
    (kprobe({"int_arg": 1 << 31}), "process_kprobe.args[0].int_arg: 2147483648 is out of int32's range"),
    (kprobe({"int_arg": "3"}), "a int32 is a JSON number"),
    (kprobe(args=[]), "process_kprobe.args: an empty list (protojson leaves it out)"),
    (kprobe({"sock_arg": {"sport": 0, "daddr": "1.2.3.4"}}),
     "process_kprobe.args[0].sock_arg.sport: 0 is a zero value"),
    (kprobe({"file_arg": {"path": ""}}), "process_kprobe.args[0].file_arg.path: '' is a zero value"),
    (kprobe({"string_arg": "a", "int_arg": 1}), "several members of a oneof"),
    (kprobe({"string_arg": "a", "error": "unreadable"}), "KprobeArgument has no field 'error'"),
    (kprobe({"bytes_arg": "YWJj"}, {"bytes_arg": "YWJ"}), "args[1].bytes_arg: 'YWJ' is not standard base64"),
    (kprobe(action="KPROBE_ACTION_UNKNOWN"), "the zero value (protojson leaves it out)"),
    (kprobe(action="SIGKILL"), "'SIGKILL' is not a KprobeAction value name"),
    (kprobe(tags=["a", 1]), "process_kprobe.tags[1]: a string, not int"),
    ({"process_exit": {"status": 0}, "node_name": "n"}, "process_exit.status: 0 is a zero value"),
    ({"process_exec": {}, "time": "2023-01-01T00:00:00.123000000Z"}, "fewest digits"),
    ({"process_exec": {}, "time": "2023-01-01T00:00:00.1234Z"}, "not RFC 3339 in UTC"),
    ({"process_exec": {}, "time": "2023-01-01T00:00:00+02:00"}, "not RFC 3339 in UTC"),
    ({"process_exec": {}, "time": "2023-02-30T00:00:00Z"}, "not a valid date"),
    ({"process_exec": {}, "process_exit": {}}, "several members of a oneof"),
    ({"node_name": "n"}, "no event in the line"),
    ({"rate_limit_info": {"number_of_dropped_process_events": 7}}, "a uint64 is a JSON string"),
    ({"process_exec": {"process": {"pid": -1}}}, "process_exec.process.pid: -1 is out of uint32's range"),
    ({"process_exec": {"process": {"in_init_tree": 1}}}, "true or false, not int"),
    ({"process_exec": {"process": {"pod": {"pod_labels": {}}}}}, "an empty map"),
])
def test_the_checker_refuses_what_protojson_would_not_write(record, found):
    problems = tetragon_schema.problems_of(record)
    assert any(found in p for p in problems), problems


def test_not_json_is_a_problem():
    assert tetragon_schema.problems("{") and tetragon_schema.problems("[]")


# ---- every kind of event tetrad makes --------------------------------------------------

DOCKER = {"id": "e7fe6efb952421eb280601039f4f8cd7683c0c5f631fecd491ad87bea23642fd",
          "runtime": "docker", "name": "web-1", "image": "docker.io/library/nginx:1.25",
          "image_id": "sha256:a8758716bb6a", "labels": {"tier": "front"}, "partial": True}
POD = {"id": "4d1e3c9a", "runtime": "containerd", "name": "app", "image": "busybox",
       "pod": {"name": "web-7d9", "namespace": "prod", "uid": "2ac8e1b2"}}
NSPAWN = {"id": "build-vm", "runtime": "systemd-nspawn", "name": "build-vm"}


def lines_of_each_kind():
    host = process(pid=10, binary="/usr/bin/curl")
    parent = process(pid=1, binary="/usr/lib/systemd/systemd", arguments="")
    yield "exec", exec_event(1_700_000_000_000_000_000, host, parent).to_json("n")
    yield "exit status", exit_event(1_700_000_000_500_000_000, host, parent, 3, None).to_json("n")
    yield "exit signal", exit_event(1_700_000_000_000_001_000, host, None, None, 9).to_json("n")
    yield "exit 0", exit_event(1_700_000_000_000_000_001, host, None, 0, None).to_json("n")
    for name, record in (("docker", DOCKER), ("pod", POD), ("nspawn", NSPAWN)):
        yield name, event(container=record).to_json("n")
    yield "rate_limit_info", rate_limit_info(7, "n", 1_700_000_000_000_000_000)


@pytest.mark.parametrize("name,line", list(lines_of_each_kind()))
def test_each_kind_of_event_conforms(name, line):
    tetragon_schema.assert_conforms(line)


def test_a_container_is_process_pod_container_and_docker():
    proc = json.loads(event(container=DOCKER).to_json("n"))["process_exec"]["process"]
    assert proc["pod"] == {"container": {"id": DOCKER["id"], "name": "web-1",
                                         "image": {"id": "sha256:a8758716bb6a",
                                                   "name": "docker.io/library/nginx:1.25"}}}
    assert proc["docker"] == DOCKER["id"][:31]
    proc = json.loads(event(container=POD).to_json("n"))["process_exec"]["process"]
    assert proc["pod"] == {"namespace": "prod", "name": "web-7d9", "uid": "2ac8e1b2",
                           "container": {"id": "4d1e3c9a", "name": "app", "image": {"name": "busybox"}}}
    proc = json.loads(event(container=NSPAWN).to_json("n"))["process_exec"]["process"]
    assert proc["pod"] == {"container": {"id": "build-vm", "name": "build-vm"}} and "docker" not in proc


def test_a_pod_container_as_tetragon_writes_it():
    """A record the Kubernetes plugin completed (tetrad/containers/pods.py)."""
    record = {"id": "4d1e3c" + "0" * 58, "runtime": "containerd", "name": "spaceship",
              "image": "docker.io/tgraf/netperf:latest", "image_id": "docker.io/tgraf/netperf@sha256:8e86f744",
              "cri_id": "containerd://4d1e3c" + "0" * 58, "start_time": 1_696_629_161_000_000_000,
              "privileged": False, "labels": {"io.kubernetes.container.name": "spaceship"},
              "pod": {"namespace": "default", "name": "xwing", "uid": "2ac8e1b2",
                      "labels": {"app.kubernetes.io/name": "xwing"}, "workload": "xwing",
                      "workload_kind": "Pod", "annotations": {"a": "b"}}}
    line = exec_event(1_700_000_000_000_000_000, process(container=record), None).to_json("n")
    assert tetragon_schema.problems(line) == []
    pod = json.loads(line)["process_exec"]["process"]["pod"]
    assert list(pod) == ["namespace", "name", "uid", "container", "pod_labels", "workload",
                         "workload_kind", "pod_annotations"]
    assert pod["container"] == {
        "id": "containerd://4d1e3c" + "0" * 58, "name": "spaceship",
        "image": {"id": "docker.io/tgraf/netperf@sha256:8e86f744", "name": "docker.io/tgraf/netperf:latest"},
        "start_time": "2023-10-06T21:52:41Z", "security_context": {}}
    assert json.loads(line)["process_exec"]["process"]["docker"] == "4d1e3c" + "0" * 25
    privileged = exec_event(1, process(container={**record, "privileged": True}), None).to_json("n")
    assert json.loads(privileged)["process_exec"]["process"]["pod"]["container"]["security_context"] == \
        {"privileged": True}
