"""What each API request does, run on the daemon's main loop.

  status                          version, uptime, features, policies, counters
  policy_list                     per-policy state and counters
  policy_add     {yaml, source}   load a policy document (until restart)
  policy_delete  {name}           unload a policy added through the API
  policy_disable {name}           unload, remember it (any policy)
  policy_enable  {name}           load a disabled policy again
  reload                          re-read config and the policy directory

Policies from the watched directory are owned by their files: deleting one
here would be undone by the next sync, so the answer says to remove the file.
"""

from __future__ import annotations

from tetrad.policy import schema


def _error(text: str) -> dict:
    return {"ok": False, "error": text}


def _directory_entry(daemon, name: str):
    if daemon.directory is None:
        return None, None
    for path, entry in daemon.directory.entries.items():
        if entry.name == name:
            return path, entry
    return None, None


def _add(daemon, request: dict) -> dict:
    text = request.get("yaml")
    if not isinstance(text, str):
        return _error("policy_add needs the policy document in 'yaml'")
    source = str(request.get("source") or "api")
    try:
        policy = schema.parse(text, source)
        path, entry = _directory_entry(daemon, policy.name)
        if entry is not None:
            return _error(f"policy {policy.name!r} is loaded from {path}; edit that file instead")
        loaded = daemon._load(policy)
    except schema.PolicyError as err:
        return _error(str(err))
    daemon.extra_policies[policy.name] = loaded
    return {"ok": True, "name": policy.name, "hooks": len(loaded.hooks),
            "load_seconds": round(loaded.load_seconds, 3)}


def _delete(daemon, name: str) -> dict:
    if name in daemon.extra_policies:
        daemon._unload(daemon.extra_policies.pop(name))
        return {"ok": True}
    path, entry = _directory_entry(daemon, name)
    if entry is not None:
        return _error(f"policy {name!r} comes from {path}; remove that file to delete it")
    if name in daemon.disabled:
        del daemon.disabled[name]
        return {"ok": True}
    return _error(f"no policy named {name!r} (see: tetra policy list)")


def _disable(daemon, name: str) -> dict:
    if name in daemon.disabled:
        return _error(f"policy {name!r} is already disabled")
    if name in daemon.extra_policies:
        loaded = daemon.extra_policies.pop(name)
        daemon._unload(loaded)
        daemon.disabled[name] = (loaded.policy, loaded.source)
        return {"ok": True}
    path, entry = _directory_entry(daemon, name)
    if entry is not None and entry.loaded is not None:
        loaded, entry.loaded = entry.loaded, None
        daemon._unload(loaded)
        daemon.disabled[name] = (loaded.policy, path)
        return {"ok": True}
    return _error(f"no enabled policy named {name!r} (see: tetra policy list)")


def _enable(daemon, name: str) -> dict:
    if name not in daemon.disabled:
        return _error(f"no disabled policy named {name!r} (see: tetra policy list)")
    policy, source = daemon.disabled.pop(name)
    try:
        loaded = daemon._load(policy)
    except schema.PolicyError as err:
        daemon.disabled[name] = (policy, source)
        return _error(str(err))
    path, entry = _directory_entry(daemon, name)
    if entry is not None and path == source:
        entry.loaded = loaded
    else:
        daemon.extra_policies[name] = loaded
    return {"ok": True}


def execute(daemon, request: dict) -> dict:
    op = request.get("op")
    name = request.get("name")
    if op == "status":
        return {"ok": True, **daemon.status()}
    if op == "policy_list":
        return {"ok": True, "policies": daemon.policy_states()}
    if op == "policy_add":
        return _add(daemon, request)
    if op == "reload":
        return daemon.reload()
    if op in ("policy_delete", "policy_disable", "policy_enable"):
        if not isinstance(name, str) or not name:
            return _error(f"{op} needs a policy 'name'")
        return {"policy_delete": _delete, "policy_disable": _disable,
                "policy_enable": _enable}[op](daemon, name)
    return _error(f"unknown op {op!r} (status, policy_list, policy_add, policy_delete, "
                  f"policy_enable, policy_disable, reload, getevents)")
