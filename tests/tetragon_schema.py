"""Tetragon's event JSON, written down for checking tetrad's export the way a
strict protobuf consumer reads it.

The facts come from Tetragon's protobuf schema (api/v1/tetragon/
tetragon.proto, events.proto, capabilities.proto, bpf.proto): each message's
field names as its exporter writes them (protojson with proto names), each
field's type, the enums' value names, the oneofs. Not a copy of those files:
a compact description of what the JSON of `GetEventsResponse` may hold.

`problems(line)` lists what is wrong with one JSON line, judged as
protojson's marshaller writes it, which is stricter than its parser:
  - a field the message does not have is an error (no DiscardUnknown);
  - 64-bit integers (int64, uint64) are decimal strings, 32-bit ones numbers
    in range; bytes are padded standard base64; enums are value names;
  - a google.protobuf.Timestamp is RFC 3339 in UTC (`Z`) with 0, 3, 6 or 9
    fractional digits, the fewest that hold the value;
  - zero values of plain fields (0, "", false, the first enum value), empty
    lists and empty maps are left out: writing them is an error; wrapper
    types (UInt32Value...), messages and oneof members are written when set,
    zero or empty included;
  - at most one member of a oneof, and exactly one event per line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

# ---- enums ---------------------------------------------------------------------------
# Names in value order; the first is the zero value (left out of plain fields).

CAPABILITIES = (
    "CAP_CHOWN DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
    "CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST "
    "CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO "
    "CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE "
    "CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE "
    "CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
    "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE")
BPF_CMDS = " ".join("BPF_" + c for c in (
    "MAP_CREATE MAP_LOOKUP_ELEM MAP_UPDATE_ELEM MAP_DELETE_ELEM MAP_GET_NEXT_KEY PROG_LOAD "
    "OBJ_PIN OBJ_GET PROG_ATTACH PROG_DETACH PROG_TEST_RUN PROG_GET_NEXT_ID MAP_GET_NEXT_ID "
    "PROG_GET_FD_BY_ID MAP_GET_FD_BY_ID OBJ_GET_INFO_BY_FD PROG_QUERY RAW_TRACEPOINT_OPEN "
    "BTF_LOAD BTF_GET_FD_BY_ID TASK_FD_QUERY MAP_LOOKUP_AND_DELETE_ELEM MAP_FREEZE "
    "BTF_GET_NEXT_ID MAP_LOOKUP_BATCH MAP_LOOKUP_AND_DELETE_BATCH MAP_UPDATE_BATCH "
    "MAP_DELETE_BATCH LINK_CREATE LINK_UPDATE LINK_GET_FD_BY_ID LINK_GET_NEXT_ID ENABLE_STATS "
    "ITER_CREATE LINK_DETACH PROG_BIND_MAP TOKEN_CREATE").split())
ENUMS = {name: tuple(values.split()) for name, values in {
    "KprobeAction": " ".join("KPROBE_ACTION_" + a for a in (
        "UNKNOWN POST FOLLOWFD SIGKILL UNFOLLOWFD OVERRIDE COPYFD GETURL DNSLOOKUP NOPOST SIGNAL "
        "TRACKSOCK UNTRACKSOCK NOTIFYENFORCER CLEANUPENFORCERNOTIFICATION SET").split()),
    "CapabilitiesType": CAPABILITIES,
    "SecureBitsType": "SecBitNotSet SecBitNoRoot SecBitNoRootLocked SecBitNoSetUidFixup "
                      "SecBitNoSetUidFixupLocked SecBitKeepCaps SecBitKeepCapsLocked "
                      "SecBitNoCapAmbientRaise SecBitNoCapAmbientRaiseLocked",
    "ProcessPrivilegesChanged": "PRIVILEGES_CHANGED_UNSET PRIVILEGES_RAISED_EXEC_FILE_CAP "
                                "PRIVILEGES_RAISED_EXEC_FILE_SETUID PRIVILEGES_RAISED_EXEC_FILE_SETGID",
    "TaintedBitsType": "TAINT_UNSET TAINT_PROPRIETARY_MODULE TAINT_FORCED_MODULE "
                       "TAINT_FORCED_UNLOAD_MODULE TAINT_STAGED_MODULE TAINT_OUT_OF_TREE_MODULE "
                       "TAINT_UNSIGNED_MODULE TAINT_KERNEL_LIVE_PATCH_MODULE TAINT_TEST_MODULE",
    "BpfCmd": BPF_CMDS,
    "ThrottleType": "THROTTLE_UNKNOWN THROTTLE_START THROTTLE_STOP",
}.items()}

# ---- messages -------------------------------------------------------------------------
# field: type. Types: string bool bytes int32 uint32 int64 uint64, Timestamp,
# the wrappers UInt32Value Int32Value BoolValue, an enum or message name;
# "[T]" a repeated field, "{T}" a map from strings to T.

_ARG_MESSAGES = {
    "KprobeSock": {"family": "string", "type": "string", "protocol": "string", "mark": "uint32",
                   "priority": "uint32", "saddr": "string", "daddr": "string", "sport": "uint32",
                   "dport": "uint32", "cookie": "uint64", "state": "string"},
    "KprobeSkb": {"hash": "uint32", "len": "uint32", "priority": "uint32", "mark": "uint32",
                  "saddr": "string", "daddr": "string", "sport": "uint32", "dport": "uint32",
                  "proto": "uint32", "sec_path_len": "uint32", "sec_path_olen": "uint32",
                  "protocol": "string", "family": "string"},
    "KprobeSockaddr": {"family": "string", "addr": "string", "port": "uint32"},
    "KprobeSockaddrUn": {"family": "string", "path": "string"},
    "KprobeNetDev": {"name": "string"},
    "KprobePath": {"mount": "string", "path": "string", "flags": "string", "permission": "string"},
    "KprobeFile": {"mount": "string", "path": "string", "flags": "string", "permission": "string"},
    "KprobeTruncatedBytes": {"bytes_arg": "bytes", "orig_size": "uint64"},
    "KprobeCred": {"permitted": "[CapabilitiesType]", "effective": "[CapabilitiesType]",
                   "inheritable": "[CapabilitiesType]"},
    "KprobeLinuxBinprm": {"path": "string", "flags": "string", "permission": "string"},
    "KprobeCapability": {"value": "Int32Value", "name": "string"},
    "KprobeUserNamespace": {"level": "Int32Value", "owner": "UInt32Value", "group": "UInt32Value",
                            "ns": "Namespace"},
    "KprobeBpfAttr": {"ProgType": "string", "InsnCnt": "uint32", "ProgName": "string"},
    "KprobeBpfProg": {"ProgType": "string", "InsnCnt": "uint32", "ProgName": "string"},
    "KprobePerfEvent": {"KprobeFunc": "string", "Type": "string", "Config": "uint64",
                        "ProbeOffset": "uint64"},
    "KprobeBpfMap": {"MapType": "string", "KeySize": "uint32", "ValueSize": "uint32",
                     "MaxEntries": "uint32", "MapName": "string"},
    "KprobeError": {"Message": "string"},
    "SyscallId": {"id": "uint32", "abi": "string"},
    "KernelModule": {"name": "string", "signature_ok": "BoolValue", "tainted": "[TaintedBitsType]"},
    "KprobeArgument": {
        "string_arg": "string", "int_arg": "int32", "skb_arg": "KprobeSkb", "size_arg": "uint64",
        "bytes_arg": "bytes", "path_arg": "KprobePath", "file_arg": "KprobeFile",
        "truncated_bytes_arg": "KprobeTruncatedBytes", "sock_arg": "KprobeSock",
        "cred_arg": "KprobeCred", "long_arg": "int64", "bpf_attr_arg": "KprobeBpfAttr",
        "perf_event_arg": "KprobePerfEvent", "bpf_map_arg": "KprobeBpfMap", "uint_arg": "uint32",
        "user_namespace_arg": "KprobeUserNamespace", "capability_arg": "KprobeCapability",
        "process_credentials_arg": "ProcessCredentials", "user_ns_arg": "UserNamespace",
        "module_arg": "KernelModule", "kernel_cap_t_arg": "string", "cap_inheritable_arg": "string",
        "cap_permitted_arg": "string", "cap_effective_arg": "string",
        "linux_binprm_arg": "KprobeLinuxBinprm", "net_dev_arg": "KprobeNetDev",
        "bpf_cmd_arg": "BpfCmd", "syscall_id": "SyscallId", "sockaddr_arg": "KprobeSockaddr",
        "bpf_prog_arg": "KprobeBpfProg", "error_arg": "KprobeError",
        "sockaddrun_arg": "KprobeSockaddrUn",
        "label": "string"},
}
_NAMESPACES = ("uts ipc mnt pid pid_for_children net time time_for_children cgroup user").split()
MESSAGES: dict[str, dict[str, str]] = {
    "Image": {"id": "string", "name": "string"},
    "SecurityContext": {"privileged": "bool"},
    "Container": {"id": "string", "name": "string", "image": "Image", "start_time": "Timestamp",
                  "pid": "UInt32Value", "maybe_exec_probe": "bool",
                  "security_context": "SecurityContext"},
    "Pod": {"namespace": "string", "name": "string", "uid": "string", "container": "Container",
            "pod_labels": "{string}", "workload": "string", "workload_kind": "string",
            "pod_annotations": "{string}"},
    "Capabilities": {"permitted": "[CapabilitiesType]", "effective": "[CapabilitiesType]",
                     "inheritable": "[CapabilitiesType]"},
    "Namespace": {"inum": "uint32", "is_host": "bool"},
    "Namespaces": {ns: "Namespace" for ns in _NAMESPACES},
    "UserNamespace": {"level": "Int32Value", "uid": "UInt32Value", "gid": "UInt32Value",
                      "ns": "Namespace"},
    "ProcessCredentials": {**{f: "UInt32Value" for f in
                              "uid gid euid egid suid sgid fsuid fsgid".split()},
                           "securebits": "[SecureBitsType]", "caps": "Capabilities",
                           "user_ns": "UserNamespace"},
    "InodeProperties": {"number": "uint64", "links": "UInt32Value"},
    "FileProperties": {"inode": "InodeProperties", "path": "string"},
    "BinaryProperties": {"setuid": "UInt32Value", "setgid": "UInt32Value",
                         "privileges_changed": "[ProcessPrivilegesChanged]",
                         "file": "FileProperties"},
    "UserRecord": {"name": "string"},
    "EnvVar": {"Key": "string", "Value": "string"},
    "Process": {"exec_id": "string", "pid": "UInt32Value", "uid": "UInt32Value", "cwd": "string",
                "binary": "string", "arguments": "string", "flags": "string",
                "start_time": "Timestamp", "auid": "UInt32Value", "pod": "Pod", "docker": "string",
                "parent_exec_id": "string", "refcnt": "uint32", "cap": "Capabilities",
                "ns": "Namespaces", "tid": "UInt32Value",
                "process_credentials": "ProcessCredentials",
                "binary_properties": "BinaryProperties", "user": "UserRecord",
                "in_init_tree": "BoolValue", "environment_variables": "[EnvVar]"},
    "StackTraceEntry": {"address": "uint64", "offset": "uint64", "symbol": "string",
                        "module": "string"},
    **_ARG_MESSAGES,
    "ProcessExec": {"process": "Process", "parent": "Process", "ancestors": "[Process]"},
    "ProcessExit": {"process": "Process", "parent": "Process", "signal": "string",
                    "status": "uint32", "time": "Timestamp", "ancestors": "[Process]"},
    "ProcessKprobe": {"process": "Process", "parent": "Process", "function_name": "string",
                      "args": "[KprobeArgument]", "return": "KprobeArgument",
                      "action": "KprobeAction", "kernel_stack_trace": "[StackTraceEntry]",
                      "policy_name": "string", "return_action": "KprobeAction",
                      "message": "string", "tags": "[string]",
                      "user_stack_trace": "[StackTraceEntry]", "ancestors": "[Process]",
                      "data": "[KprobeArgument]"},
    "ProcessTracepoint": {"process": "Process", "parent": "Process", "subsys": "string",
                          "event": "string", "args": "[KprobeArgument]", "policy_name": "string",
                          "action": "KprobeAction", "message": "string", "tags": "[string]",
                          "ancestors": "[Process]"},
    "ProcessUprobe": {"process": "Process", "parent": "Process", "path": "string",
                      "symbol": "string", "policy_name": "string", "message": "string",
                      "args": "[KprobeArgument]", "tags": "[string]", "ancestors": "[Process]",
                      "offset": "uint64", "ref_ctr_offset": "uint64", "action": "KprobeAction",
                      "data": "[KprobeArgument]"},
    "ProcessUsdt": {"process": "Process", "parent": "Process", "path": "string",
                    "provider": "string", "name": "string", "policy_name": "string",
                    "message": "string", "args": "[KprobeArgument]", "tags": "[string]",
                    "ancestors": "[Process]", "action": "KprobeAction", "flags": "string"},
    "ProcessLsm": {"process": "Process", "parent": "Process", "function_name": "string",
                   "policy_name": "string", "message": "string", "args": "[KprobeArgument]",
                   "action": "KprobeAction", "tags": "[string]", "ancestors": "[Process]",
                   "ima_hash": "string"},
    "ProcessLoader": {"process": "Process", "path": "string", "buildid": "bytes",
                      "parent": "Process", "ancestors": "[Process]"},
    "ProcessThrottle": {"type": "ThrottleType", "cgroup": "string"},
    "RateLimitInfo": {"number_of_dropped_process_events": "uint64"},
    "Test": {"arg0": "uint64", "arg1": "uint64", "arg2": "uint64", "arg3": "uint64"},
    "AggregationInfo": {"count": "uint64"},
    "GetEventsResponse": {
        "process_exec": "ProcessExec", "process_exit": "ProcessExit",
        "process_kprobe": "ProcessKprobe", "process_tracepoint": "ProcessTracepoint",
        "process_loader": "ProcessLoader", "process_uprobe": "ProcessUprobe",
        "process_throttle": "ProcessThrottle", "process_lsm": "ProcessLsm",
        "process_usdt": "ProcessUsdt", "test": "Test", "rate_limit_info": "RateLimitInfo",
        "node_name": "string", "time": "Timestamp", "aggregation_info": "AggregationInfo",
        "cluster_name": "string", "node_labels": "{string}"},
}
# message -> its oneof's members (whose zero values are written when set).
ONEOFS = {
    "KprobeArgument": frozenset(MESSAGES["KprobeArgument"]) - {"label"},
    "GetEventsResponse": frozenset(k for k in MESSAGES["GetEventsResponse"]
                                   if k.startswith("process_") or k in ("test", "rate_limit_info")),
}

WRAPPERS = {"UInt32Value": "uint32", "Int32Value": "int32", "BoolValue": "bool"}
_RANGES = {"int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
           "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1)}
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{3}|\d{6}|\d{9}))?Z")
_DECIMAL = re.compile(r"-?(0|[1-9]\d*)")


class Checker:
    def __init__(self):
        self.problems: list[str] = []

    def fail(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def message(self, name: str, value, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(path, f"{name} must be a JSON object, not {type(value).__name__}")
            return
        fields = MESSAGES[name]
        oneof = ONEOFS.get(name, frozenset())
        members = [k for k in value if k in oneof]
        if len(members) > 1:
            self.fail(path, f"{name} has several members of a oneof: {members}")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                self.fail(where, f"{name} has no field {key!r}")
                continue
            self.field(fields[key], item, where, in_oneof=key in oneof)

    def field(self, type_: str, value, path: str, in_oneof: bool = False) -> None:
        if type_.startswith("["):
            if not isinstance(value, list):
                self.fail(path, f"a repeated field is a JSON list, not {type(value).__name__}")
            elif not value:
                self.fail(path, "an empty list (protojson leaves it out)")
            else:
                for i, item in enumerate(value):
                    self.single(type_[1:-1], item, f"{path}[{i}]", explicit=True)
        elif type_.startswith("{"):
            if not isinstance(value, dict):
                self.fail(path, f"a map is a JSON object, not {type(value).__name__}")
            elif not value:
                self.fail(path, "an empty map (protojson leaves it out)")
            else:
                for key, item in value.items():
                    self.single(type_[1:-1], item, f"{path}[{key!r}]", explicit=True)
        else:
            self.single(type_, value, path, explicit=in_oneof)

    def single(self, type_: str, value, path: str, explicit: bool) -> None:
        """`explicit`: a value written whenever set (list items, map values,
        oneof members), so a zero value is no error."""
        if type_ in WRAPPERS:
            self.scalar(WRAPPERS[type_], value, path, explicit=True)
        elif type_ == "Timestamp":
            self.timestamp(value, path)
        elif type_ in ENUMS:
            values = ENUMS[type_]
            if value not in values:
                self.fail(path, f"{value!r} is not a {type_} value name")
            elif value == values[0] and not explicit:
                self.fail(path, f"{value} is the zero value (protojson leaves it out)")
        elif type_ in MESSAGES:
            self.message(type_, value, path)
        else:
            self.scalar(type_, value, path, explicit)

    def scalar(self, type_: str, value, path: str, explicit: bool) -> None:
        if type_ == "string":
            if not isinstance(value, str):
                return self.fail(path, f"a string, not {type(value).__name__}")
            zero = value == ""
        elif type_ == "bool":
            if not isinstance(value, bool):
                return self.fail(path, f"true or false, not {type(value).__name__}")
            zero = value is False
        elif type_ == "bytes":
            if not isinstance(value, str):
                return self.fail(path, f"base64 text, not {type(value).__name__}")
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return self.fail(path, f"{value[:40]!r} is not standard base64")
            if base64.b64encode(raw).decode() != value:
                return self.fail(path, f"{value[:40]!r} is not padded standard base64")
            zero = raw == b""
        elif type_ in ("int64", "uint64"):
            if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
                return self.fail(path, f"a {type_} is a JSON string of decimal digits, not {value!r}")
            zero = self.in_range(type_, int(value), path)
        elif type_ in ("int32", "uint32"):
            if not isinstance(value, int) or isinstance(value, bool):
                return self.fail(path, f"a {type_} is a JSON number, not {value!r}")
            zero = self.in_range(type_, value, path)
        else:
            raise AssertionError(f"schema: unknown type {type_}")
        if zero and not explicit:
            self.fail(path, f"{value!r} is a zero value (protojson leaves it out)")

    def in_range(self, type_: str, value: int, path: str) -> bool:
        low, high = _RANGES[type_]
        if not low <= value <= high:
            self.fail(path, f"{value} is out of {type_}'s range")
        return value == 0

    def timestamp(self, value, path: str) -> None:
        m = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            return self.fail(path, f"{value!r} is not RFC 3339 in UTC with 0, 3, 6 or 9 digits")
        try:
            datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return self.fail(path, f"{value!r} is not a valid date and time")
        fraction = m.group(2) or ""
        if fraction and fraction.endswith("000"):
            self.fail(path, f"{value!r}: protojson writes the fewest digits (3, 6 or 9) that hold it")


def problems_of(record) -> list[str]:
    checker = Checker()
    checker.message("GetEventsResponse", record, "")
    if isinstance(record, dict) and not any(k in ONEOFS["GetEventsResponse"] for k in record):
        checker.fail("", "no event in the line")
    return checker.problems


def problems(line: str) -> list[str]:
    """What is wrong with one exported JSON line (empty: nothing)."""
    try:
        record = json.loads(line)
    except ValueError as err:
        return [f"not JSON: {err}"]
    return problems_of(record)


def assert_conforms(line: str) -> None:
    found = problems(line)
    assert not found, "not Tetragon's schema:\n  " + "\n  ".join(found) + f"\nline: {line[:2000]}"


class LineChecker:
    """Checks many lines of one export file fast: a line that differs from
    one already checked only in its top-level `time` (the last field tetrad
    writes) has only that time checked again. A flood of one policy's events
    is thus checked in full once."""

    _TIME = b',"time":"'

    def __init__(self):
        self._seen: set[bytes] = set()

    def problems(self, raw: bytes, record) -> list[str]:
        body, sep, time = raw.rpartition(self._TIME)
        if sep and body in self._seen:
            checker = Checker()
            checker.timestamp(time.rstrip(b"}\n").rstrip(b'"').decode(errors="replace"), "time")
            return checker.problems
        found = problems_of(record)
        if sep and not found:
            self._seen.add(body)
        return found
