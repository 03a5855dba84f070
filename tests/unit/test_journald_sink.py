"""The journald sink: whether journald is there (a socket that answers, not
a file), and the fields of an entry."""

import json
import socket

from tetrad.sinks.journald import journal_fields, listening
from tests.unit.events import event


def test_a_socket_that_answers_is_journald(tmp_path):
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert listening(path)


def test_a_socket_file_left_behind_is_not(tmp_path):
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
    assert (tmp_path / "socket").exists()            # as a stopped journald leaves it
    assert not listening(path)
    assert not listening(str(tmp_path / "missing"))


def test_message_is_the_escaped_compact_line_and_fields_keep_the_values():
    hostile = "\x1b[2J\ninjected"
    container = {"id": "e7fe6efb952421eb2806", "runtime": "podman", "name": "web-1", "image": "nginx"}
    ev = event(binary=f"/tmp/{hostile}", container=container)
    fields = dict(f.split("=", 1) for f in journal_fields(ev, "n"))
    assert fields["MESSAGE"] == '🚀 process web-1 "/tmp/\\x1b[2J\\ninjected" "-I https://example.org"'
    assert fields["TETRAD_BINARY"] == f"/tmp/{hostile}"
    assert (fields["TETRAD_CONTAINER_RUNTIME"], fields["TETRAD_CONTAINER_NAME"]) == ("podman", "web-1")
    exported = json.loads(fields["TETRAD_JSON"])["process_exec"]["process"]
    assert exported["binary"] == f"/tmp/{hostile}" and "runtime" not in json.dumps(exported)
    assert exported["pod"]["container"]["name"] == "web-1"


def test_a_pod_has_its_fields():
    container = {"id": "c" * 64, "runtime": "containerd", "name": "app", "cri_id": "containerd://" + "c" * 64,
                 "pod": {"namespace": "prod", "name": "web-7d9f-x2x", "uid": "u-1", "labels": {"app": "web"},
                         "workload": "web", "workload_kind": "Deployment"}}
    fields = dict(f.split("=", 1) for f in journal_fields(event(container=container), "n"))
    assert fields["MESSAGE"].startswith("🚀 process prod/web-7d9f-x2x /usr/bin/curl")
    assert {k: v for k, v in fields.items() if k.startswith("TETRAD_POD_")} == {
        "TETRAD_POD_NAMESPACE": "prod", "TETRAD_POD_NAME": "web-7d9f-x2x", "TETRAD_POD_UID": "u-1",
        "TETRAD_POD_WORKLOAD": "web", "TETRAD_POD_WORKLOAD_KIND": "Deployment"}
    assert fields["TETRAD_CONTAINER_ID"] == "c" * 64


def test_a_monitored_action_is_a_notice_not_a_warning():
    def fields_of(monitored: bool) -> dict:
        ev = event("process_kprobe", policy_name="p", action="KPROBE_ACTION_SIGKILL")
        ev.monitored = monitored
        return dict(f.split("=", 1) for f in journal_fields(ev, "n"))
    enforced = fields_of(False)
    assert enforced["PRIORITY"] == "4" and "TETRAD_POLICY_MODE" not in enforced
    monitored = fields_of(True)
    assert monitored["PRIORITY"] == "5" and monitored["TETRAD_POLICY_MODE"] == "monitor"
    assert monitored["TETRAD_ACTION"] == "KPROBE_ACTION_SIGKILL"
