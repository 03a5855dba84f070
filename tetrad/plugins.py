"""Optional plugins: which are installed, their config tables, starting them.

A plugin is a separate distribution (the Kubernetes one is
plugins/kubernetes, package tetrad-kubernetes) that declares one entry point
in the group `tetrad.plugins`, named after its config table, whose object is
a PluginSpec:

    [project.entry-points."tetrad.plugins"]
    kubernetes = "tetrad_kubernetes.spec:SPEC"

The spec says what the plugin is to tetrad, and nothing is imported from
the plugin before its table appears in the config:
  name      its config table ([kubernetes]) and the entry point's name
  package   the distribution to install, named in errors
  config    a frozen dataclass of the table's keys, every one with a
            default, `enabled: bool = False` among them; tetrad checks a
            table against it as against its own (unknown keys, wrong
            types are errors naming the file and key)
  check     the plugin's own checks of its merged config: problems as text
  start     config, Host -> a running plugin (Running); may raise
            PluginError (a missing dependency, a bad path) to stop the
            daemon's start with that message
A plugin is enabled by its table (`[kubernetes] enabled = true`, in a
drop-in its package installs); one that is not enabled is never imported
past its spec and costs nothing. A table naming a plugin that is not
installed is an error only if it enables it (KNOWN names the package).

What a running plugin gives the daemon is small and explicit: `pods`, a
source of pod identity for container records (tetrad/containers/pods.py),
or None; `stats()` for `tetra status`; `close()` at stop.

Imported by tetrad/config.py (tables) and tetrad/cli/run.py (start); the
registry is an object passed along, not module state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from importlib import metadata
from typing import Callable, Protocol

GROUP = "tetrad.plugins"
# Plugins tetrad knows by name, for the error when one is enabled but
# missing: table -> the distribution to install.
KNOWN = {"kubernetes": "tetrad-kubernetes"}


class PluginError(Exception):
    """A plugin cannot be used as configured; the message says what to do."""


@dataclass(frozen=True)
class Host:
    """What tetrad tells a plugin it starts."""

    node_name: str


class Running(Protocol):
    """A started plugin."""

    name: str
    pods: object | None          # a tetrad.containers.pods.PodSource, or None

    def stats(self) -> dict: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class PluginSpec:
    name: str
    package: str
    config: type
    start: Callable[[object, Host], Running]
    check: Callable[[object], list[str]] = lambda config: []

    def __post_init__(self):
        if not is_dataclass(self.config) or "enabled" not in {f.name for f in fields(self.config)}:
            raise TypeError(f"plugin {self.name}: config must be a dataclass with `enabled`")


class PluginRegistry:
    """The plugins that can be used: registered specs, and the entry points
    of installed distributions, loaded when first asked for."""

    def __init__(self, entry_points=()):
        self._specs: dict[str, PluginSpec] = {}
        self._entry_points = {ep.name: ep for ep in entry_points}

    @classmethod
    def installed(cls) -> PluginRegistry:
        """The plugins installed on this system (entry points only: nothing
        is imported yet)."""
        return cls(metadata.entry_points(group=GROUP))

    def register(self, spec: PluginSpec) -> None:
        self._specs[spec.name] = spec

    def names(self) -> set[str]:
        return set(self._specs) | set(self._entry_points)

    def spec(self, name: str) -> PluginSpec | None:
        """The plugin's spec (importing its spec module the first time), or
        None when no such plugin is installed. A broken plugin is a
        PluginError naming its package."""
        if name not in self._specs and name in self._entry_points:
            try:
                spec = self._entry_points[name].load()
            except Exception as err:
                raise PluginError(f"plugin {name} is installed but cannot be loaded "
                                  f"({type(err).__name__}: {err}); reinstall "
                                  f"{KNOWN.get(name, 'its package')}") from None
            if not isinstance(spec, PluginSpec) or spec.name != name:
                raise PluginError(f"entry point {name} in {GROUP} is not a tetrad plugin spec")
            self._specs[name] = spec
        return self._specs.get(name)

    def start_enabled(self, configs: dict, host: Host) -> list[Running]:
        """Start every plugin whose config (name -> its dataclass, from
        tetrad's Config.plugins) is enabled; a PluginError stops the start,
        and the plugins already started are closed."""
        running: list[Running] = []
        try:
            for name, config in sorted(configs.items()):
                if config.enabled:
                    running.append(self._specs[name].start(config, host))
        except BaseException:
            for plugin in running:
                plugin.close()
            raise
        return running
