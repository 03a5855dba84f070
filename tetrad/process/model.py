"""The Process as events report it, and how its fields are derived.

A Process is one image of one process: a new exec makes a new Process for the
same pid. Fields follow Tetragon's `Process` message; `to_dict()` gives its
JSON form with Tetragon's names, leaving out empty fields as protojson does
(pid, uid, auid and tid are wrapped integers in the schema, so 0 is written).
The container record stays as tetrad knows it (`container`, read by filters,
journald fields and policy scopes); the JSON has Tetragon's `pod` and
`docker` made from it (tetrad/containers/export.py). Credentials and
namespaces (`state`) appear as Tetragon's `cap`, `ns` and
`process_credentials` where the config asks for them (`annotation`,
tetrad/process/annotate.py). A Process is never changed once an event may
hold it, but for its container: when its credentials or namespaces change,
the cache replaces it with a copy (`with_state`), so events already made
keep the values of their time.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

from tetrad.containers.export import docker_field, pod_field
from tetrad.decode.process import ProcKey, ProcState
from tetrad.process.annotate import Annotation
from tetrad.jsontext import dumps as _dumps
from tetrad.timefmt import rfc3339


@dataclass(slots=True, eq=False)
class Process:
    exec_id: str
    key: ProcKey
    pid: int
    tid: int
    uid: int
    gid: int
    auid: int
    cwd: str
    binary: str
    arguments: str
    flags: str
    start_time_ns: int
    parent_exec_id: str = ""
    parent_key: ProcKey | None = None
    cgroup_id: int = 0
    exited: bool = False
    # The container's record (tetrad/containers/resolver.py), None on the
    # host. Change through set_container().
    container: dict | None = None
    # Credentials and namespaces as last known, and their JSON fields (None
    # when the config leaves them out).
    state: ProcState | None = None
    annotation: Annotation | None = None
    _json: str = ""
    _dict: dict | None = field(default=None, repr=False)

    def set_container(self, record: dict | None) -> None:
        self.container = record
        self._json = ""
        self._dict = None

    def with_state(self, state: ProcState | None, annotation: Annotation | None) -> Process:
        """A copy of this process with new credentials or namespaces (events
        already made hold this one)."""
        return dataclasses.replace(self, state=state, annotation=annotation, _json="", _dict=None)

    def to_json(self) -> str:
        """to_dict() as JSON text, made once: a process appears in many
        events (its exec, its exit, as the parent of its children). The
        annotation's text is spliced in as encoded once per state."""
        if not self._json:
            ann = self.annotation
            if ann is None:
                self._json = _dumps(self.to_dict())
            else:
                own = self._own_fields()
                self._json = "".join((_dumps(own)[:-1], ann.before_tid, ',"tid":',
                                      str(self.tid), ann.after_tid, "}"))
        return self._json

    def to_dict(self) -> dict:
        """The JSON form, made once and shared: callers must not change it."""
        if self._dict is None:
            self._dict = self._make_dict()
        return self._dict

    def _make_dict(self) -> dict:
        d = self._own_fields()
        ann = self.annotation
        if ann is not None:
            if ann.cap is not None:
                d["cap"] = ann.cap
            if ann.ns is not None:
                d["ns"] = ann.ns
        d["tid"] = self.tid
        if ann is not None and ann.process_credentials is not None:
            d["process_credentials"] = ann.process_credentials
        return d

    def _own_fields(self) -> dict:
        """Fields up to parent_exec_id, in proto order (`tid` and the
        annotation follow)."""
        d = {"exec_id": self.exec_id, "pid": self.pid, "uid": self.uid}
        if self.cwd:
            d["cwd"] = self.cwd
        if self.binary:
            d["binary"] = self.binary
        if self.arguments:
            d["arguments"] = self.arguments
        if self.flags:
            d["flags"] = self.flags
        d["start_time"] = rfc3339(self.start_time_ns)
        d["auid"] = self.auid
        if self.container:
            d["pod"] = pod_field(self.container)
            docker = docker_field(self.container)
            if docker:
                d["docker"] = docker
        if self.parent_exec_id:
            d["parent_exec_id"] = self.parent_exec_id
        return d


_WHITESPACE = re.compile(r"\s").search


def join_arguments(args: tuple[str, ...] | list[str]) -> str:
    """Tetragon's `arguments`: argv[1:] joined by spaces, an argument that
    contains whitespace (or is empty) in double quotes."""
    out = []
    for arg in args:
        if arg == "" or _WHITESPACE(arg):
            out.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(arg)
    return " ".join(out)


def binary_path(exe: str, filename: str, cwd: str) -> str:
    """The resolved path of the executable when the kernel walked it, else the
    path given to execve, made absolute against the cwd when relative."""
    if exe:
        return exe
    if filename and not filename.startswith("/") and cwd:
        return os.path.normpath(os.path.join(cwd, filename))
    return filename
