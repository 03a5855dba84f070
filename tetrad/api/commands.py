"""What each API request does: each maps to one registry call or one read.

  status                          version, uptime, features, policies, counters
  policy_list                     per-policy state and counters
  policy_add     {yaml, source}   load a policy document (until restart)
  policy_delete  {name}           unload a policy added through the API
  policy_disable {name}           unload, remember it (any policy)
  policy_enable  {name}           load a disabled policy again (as its source is now)
  reload                          re-read config and the policy sources

`status` and `policy_list` are answered from the snapshot the control
thread publishes (`from_snapshot`, on the API's thread), so they answer
while a policy compiles; the others run on the control thread (`execute`).
Policies from files are owned by their files: deleting one here would be
undone by the next sync, so the answer says to remove the file.
"""

from __future__ import annotations

import hashlib

from tetrad.policy import schema
from tetrad.policy.registry import PolicyRegistry, RequestError

OPS = ("status", "policy_list", "policy_add", "policy_delete", "policy_enable", "policy_disable",
       "reload", "getevents")


def _error(text: str) -> dict:
    return {"ok": False, "error": text}


def from_snapshot(daemon, request: dict) -> dict | None:
    """The answer to a read-only request, or None for one that must run
    on the control thread."""
    op = request.get("op")
    if op == "status":
        return {"ok": True, **daemon.status()}
    if op == "policy_list":
        return {"ok": True, "policies": daemon.snapshot["policies"]}
    return None


def _add(daemon, request: dict) -> dict:
    text = request.get("yaml")
    if not isinstance(text, str):
        return _error("policy_add needs the policy document in 'yaml'")
    source = str(request.get("source") or "api")
    try:
        policy = schema.parse(text, source)
        entry = daemon.registry.add(policy, hashlib.sha256(text.encode()).hexdigest())
    except (schema.PolicyError, RequestError) as err:
        return _error(str(err))
    handle = entry.loaded.handle
    return {"ok": True, "name": policy.name, "hooks": len(handle.hooks),
            "load_seconds": round(handle.load_seconds, 3)}


def _by_name(call):
    def run(daemon, name: str) -> dict:
        try:
            call(daemon.registry, name)
        except RequestError as err:
            return _error(str(err))
        return {"ok": True}
    return run


NAMED = {
    "policy_delete": _by_name(PolicyRegistry.delete),
    "policy_disable": _by_name(PolicyRegistry.disable),
    "policy_enable": _by_name(PolicyRegistry.enable),
}


def execute(daemon, request: dict) -> dict:
    """Run a request on the control thread."""
    op = request.get("op")
    answer = from_snapshot(daemon, request)
    if answer is not None:
        return answer
    if op == "policy_add":
        return _add(daemon, request)
    if op == "reload":
        return daemon.reload()
    if op in NAMED:
        name = request.get("name")
        if not isinstance(name, str) or not name:
            return _error(f"{op} needs a policy 'name'")
        return NAMED[op](daemon, name)
    return _error(f"unknown op {op!r} ({', '.join(OPS)})")
