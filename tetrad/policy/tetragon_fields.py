"""The names Tetragon's TracingPolicy schema has, per object, and its argument types.

The parser (tetrad/policy/schema.py) accepts Tetragon's policies unchanged,
so a field it does not handle is one of two things: a field of Tetragon's
that tetrad has not implemented ("not supported by tetrad yet": the policy
is right, tetrad is behind) or a field nobody has (a typo: "unknown
field"). These sets tell the two apart. They are the JSON names of
Tetragon's CRD (cilium/tetragon pkg/k8s/apis/cilium.io/v1alpha1, and
pkg/generictypes for the argument types) as of v1.8; keep them in step
when Tetragon adds fields.
"""

from __future__ import annotations

_HOOK_COMMON = {"args", "selectors", "message", "tags"}

FIELDS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "document": {"apiVersion", "kind", "metadata", "spec"},
    # Kubernetes' ObjectMeta: what `kubectl get -o yaml` writes.
    "metadata": {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                 "generation", "creationTimestamp", "deletionTimestamp",
                 "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
                 "finalizers", "managedFields"},
    "spec": {"kprobes", "tracepoints", "loader", "uprobes", "lsmhooks", "usdts", "fentries",
             "podSelector", "containerSelector", "hostSelector", "nodeSelector", "lists",
             "enforcers", "options", "selectorsMacros"},
    "kprobe": _HOOK_COMMON | {"call", "return", "syscall", "data", "returnArg",
                              "returnArgAction", "ignore"},
    "tracepoint": _HOOK_COMMON | {"subsystem", "event", "raw"},
    "uprobe": _HOOK_COMMON | {"path", "btfPath", "symbols", "offsets", "addrs", "refCtrOffsets",
                              "data", "return", "returnArg", "binaryDigests", "ignore"},
    "usdt": _HOOK_COMMON | {"path", "btfPath", "provider", "name"},
    "lsm": _HOOK_COMMON | {"hook"},
    "arg": {"index", "type", "resolve", "sizeArgIndex", "returnCopy", "maxData", "label",
            "source", "btfType", "btfTypeModule"},
    "selector": {"label", "matchPIDs", "matchArgs", "matchData", "matchActions",
                 "matchReturnArgs", "matchReturnActions", "matchBinaries",
                 "matchParentBinaries", "matchNamespaces", "matchNamespaceChanges",
                 "matchCapabilities", "matchCapabilityChanges", "matchWorkloads", "macros"},
    "matchArgs": {"index", "args", "operator", "values"},
    "matchPIDs": {"operator", "values", "isNamespacePID", "followForks"},
    "matchBinaries": {"operator", "values", "followChildren"},
    "matchNamespaces": {"namespace", "operator", "values"},
    "matchNamespaceChanges": {"operator", "values"},
    "matchCapabilities": {"type", "operator", "isNamespaceCapability", "values"},
    "matchCapabilityChanges": {"type", "operator", "isNamespaceCapability", "values"},
    "action": {"action", "argUrl", "argFqdn", "argError", "argSig", "argSock", "argFd",
               "argName", "argIndex", "argValue", "argRegs", "argNewSymbol", "argNewAddr",
               "argNewOffset", "rateLimit", "rateLimitScope", "kernelStackTrace",
               "userStackTrace", "imaHash"},
    "option": {"name", "value"},
    "enforcer": {"calls"},
    "list": {"name", "values", "type", "pattern", "validated"},
}.items()}

ARG_TYPES = frozenset({
    "string", "int", "uint64", "ulong", "uint32", "sint64", "int64", "long", "sint32", "int32",
    "skb", "sock", "size_t", "char_buf", "char_iovec", "filename", "file", "path", "fd", "cred",
    "const_buf", "nop", "bpf_attr", "perf_event", "bpf_map", "user_namespace", "capability",
    "kiocb", "iov_iter", "load_info", "module", "syscall64", "sint16", "int16", "uint16",
    "sint8", "int8", "uint8", "kernel_cap_t", "cap_inheritable", "cap_permitted",
    "cap_effective", "linux_binprm", "data_loc", "net_device", "sockaddr", "sockaddr_un",
    "socket", "dentry", "bpf_prog",
})

LIST_TYPES = frozenset({"syscalls", "generated_syscalls", "generated_ftrace"})
