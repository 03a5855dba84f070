"""Configuration: TOML layers, validated into one frozen Config.

Layers, later wins, key by key:
  1. packaged defaults   /usr/share/tetrad/etc/tetrad.toml  (a checkout: etc/tetrad.toml)
  2. packaged drop-ins   /usr/share/tetrad/etc/tetrad.d/*.toml, in name order
                         (plugins' packages install theirs here)
  3. the admin's file    /etc/tetragon/tetrad.toml
  4. drop-ins            /etc/tetragon/tetrad.d/*.toml, in name order
  5. command-line flags
A missing layer file or drop-in directory is simply absent (the packaged
defaults must exist). Unknown keys and values of the wrong type or range are
errors that name the file and the key, so a typo never silently falls back
to a default. A plugin's table ([kubernetes]) is checked the same way
against the keys the installed plugin declares (tetrad/plugins.py); the
table of a plugin that is not installed is an error only if it enables it.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import toml

from tetrad.paths import shipped_etc_dir
from tetrad.plugins import KNOWN, PluginError, PluginRegistry
from tetrad.process.redaction import Redaction
from tetrad.useractions import parse_server

ETC = Path("/etc/tetragon")


class ConfigError(Exception):
    """A config file or flag is wrong; the message names where and which key."""


@dataclass(frozen=True)
class ProcessConfig:
    cache_size: int = 65536
    ringbuf_pages: int = 2048
    execve_map_entries: int = 32768
    enable_process_cred: bool = False
    enable_process_ns: bool = False


@dataclass(frozen=True)
class PoliciesConfig:
    dir: str = "/etc/tetragon/policies.d"
    bpf_cache: str = "/var/cache/tetrad/bpf"


@dataclass(frozen=True)
class ExportConfig:
    file: str = ""
    max_size_mb: int = 10
    max_backups: int = 5
    rotation_interval: str = "0"
    compress: bool = False
    allow: list = field(default_factory=list)
    deny: list = field(default_factory=list)
    rate_limit: int = -1            # events per minute; -1 off, 0 none exported


@dataclass(frozen=True)
class JournaldConfig:
    enabled: bool = True


@dataclass(frozen=True)
class ServerConfig:
    socket: str = "/run/tetrad/tetrad.sock"
    metrics_address: str = ""


@dataclass(frozen=True)
class ActionsConfig:
    """The selector actions the daemon performs itself (tetrad/useractions.py)."""
    dns_server: str = "1.1.1.1:53"          # DnsLookup asks it (Tetragon's)
    timeout: str = "5s"                     # per GetUrl request or DnsLookup query


@dataclass(frozen=True)
class Config:
    node_name: str = ""
    log_level: str = "info"
    queue_size: int = 65536
    queue_mb: int = 64
    stats_interval: str = "60s"
    # Compiled at load from a list of tables (see tetrad.process.redaction).
    redaction_filters: Redaction = Redaction()
    process: ProcessConfig = ProcessConfig()
    policies: PoliciesConfig = PoliciesConfig()
    export: ExportConfig = ExportConfig()
    journald: JournaldConfig = JournaldConfig()
    server: ServerConfig = ServerConfig()
    actions: ActionsConfig = ActionsConfig()
    # Installed plugins whose table is present: name -> its config dataclass.
    plugins: dict = field(default_factory=dict)
    sources: tuple = ()            # files read, in order (for `tetra status`)

    @property
    def node(self) -> str:
        return self.node_name or socket.gethostname()


_CHECKS = {
    "log_level": lambda v: v in ("debug", "info", "warning", "error"),
    "queue_size": lambda v: 16 <= v <= 10_000_000,
    "queue_mb": lambda v: 1 <= v <= 65536,
    "process.cache_size": lambda v: 1024 <= v <= 10_000_000,
    "process.ringbuf_pages": lambda v: v >= 16 and v & (v - 1) == 0,
    "process.execve_map_entries": lambda v: 1024 <= v <= 4_000_000,
    "export.max_size_mb": lambda v: v >= 1,
    "export.max_backups": lambda v: v >= 0,
    "export.rate_limit": lambda v: v >= -1,
}
# Keys whose TOML value is parsed into something else (errors name the key).
_PARSERS = {
    "redaction_filters": Redaction.parse,
}
_HINTS = {
    "process.ringbuf_pages": "a power of two, at least 16",
    "log_level": "debug, info, warning or error",
}


def parse_duration(text: str) -> float:
    """"90", "30s", "5m", "1h" -> seconds; "0" means off."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h")
    return float(m.group(1)) * {None: 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _merge(target, data: dict, source: str, prefix: str = ""):
    """A copy of dataclass `target` with `data` applied, checked key by key."""
    known = {f.name: f for f in fields(target) if f.name not in ("sources", "plugins")}
    changes = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown key {dotted!r} "
                              f"(known: {', '.join(sorted(known))})")
        current = getattr(target, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted} must be a table ([{dotted}])")
            changes[key] = _merge(current, value, source, f"{dotted}.")
            continue
        parse = _PARSERS.get(dotted)
        if parse is not None:
            try:
                changes[key] = parse(value)
            except ValueError as err:
                raise ConfigError(f"{source}: {dotted}{err}") from None
            continue
        if type(value) is not type(current):
            raise ConfigError(f"{source}: {dotted} must be {type(current).__name__}, "
                              f"not {type(value).__name__} ({value!r})")
        check = _CHECKS.get(dotted)
        if check and not check(value):
            hint = _HINTS.get(dotted, "")
            raise ConfigError(f"{source}: {dotted} = {value!r} is out of range{': ' + hint if hint else ''}")
        if dotted in ("stats_interval", "export.rotation_interval", "actions.timeout"):
            try:
                parse_duration(value)
            except ValueError as err:
                raise ConfigError(f"{source}: {dotted}: {err}") from None
        if dotted == "actions.dns_server":
            try:
                parse_server(value)
            except ValueError as err:
                raise ConfigError(f"{source}: {dotted}: {err}") from None
        changes[key] = value
    return replace(target, **changes)


def _read(path: Path) -> dict:
    try:
        return toml.loads(path.read_text(encoding="utf-8"))
    except toml.TomlDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None


def layer_files(etc: Path = ETC, defaults: Path | None = None) -> list[Path]:
    """The files to read, lowest precedence first (packaged defaults always)."""
    defaults = defaults or shipped_etc_dir() / "tetrad.toml"
    files = [defaults, *_dropins(defaults.parent / "tetrad.d")]
    if (etc / "tetrad.toml").is_file():
        files.append(etc / "tetrad.toml")
    return files + _dropins(etc / "tetrad.d")


def _dropins(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".toml" and p.is_file())


def load(files: list[Path], overrides: dict | None = None,
         plugins: PluginRegistry | None = None) -> Config:
    """Apply each file in order, then flag overrides ({"export": {"file": ...}}).
    `plugins`: the installed plugins whose tables may appear (default: none)."""
    plugins = plugins or PluginRegistry()
    config = Config()
    tables: dict = {}                   # plugin name -> its config, as merged so far
    missing: dict[str, tuple[str, bool]] = {}   # not installed: name -> (file, enables it)
    for path in files:
        data = _read(path)
        for name in [k for k in data if k in plugins.names() or k in KNOWN]:
            table = data.pop(name)
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {name} must be a table ([{name}])")
            spec = _plugin_spec(plugins, name, path)
            if spec is None:
                enables = table.get("enabled", missing.get(name, ("", False))[1])
                missing[name] = (str(path), enables is True)
                continue
            tables[name] = _merge(tables.get(name) or spec.config(), table, str(path), f"{name}.")
        config = _merge(config, data, str(path))
    for name, (where, enabled) in missing.items():
        if enabled:
            raise ConfigError(f"{where}: [{name}] enabled = true, but the {name} plugin is not "
                              f"installed: install {KNOWN[name]}, or set enabled = false")
    for name, table in tables.items():
        problems = plugins.spec(name).check(table)
        if problems:
            raise ConfigError(f"[{name}]: " + "; ".join(problems))
    if overrides:
        config = _merge(config, overrides, "command line")
    return replace(config, plugins=tables, sources=tuple(str(p) for p in files))


def _plugin_spec(plugins: PluginRegistry, name: str, path: Path):
    try:
        return plugins.spec(name)
    except PluginError as err:
        raise ConfigError(f"{path}: [{name}]: {err}") from None
