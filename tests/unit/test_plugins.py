"""Plugins: found by entry point, their config tables checked against the
keys they declare, enabled only by config, refused clearly when enabled but
missing; pod-scoped policies refused without one."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from tetrad import config as cfg
from tetrad.paths import shipped_etc_dir
from tetrad.plugins import Host, PluginError, PluginRegistry, PluginSpec
from tetrad.policy import workloads
from tetrad.policy.registry import Desired, PolicyRegistry
from tetrad.policy.schema import parse
from tests.policy_files import FakeLoader
from tetrad_kubernetes.spec import SPEC, KubernetesConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = shipped_etc_dir() / "tetrad.toml"


def entry_point(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group="tetrad.plugins")


KUBERNETES = entry_point("kubernetes", "tetrad_kubernetes.spec:SPEC")


def load(tmp_path: Path, text: str, plugins: PluginRegistry) -> cfg.Config:
    (tmp_path / "tetrad.d").mkdir(exist_ok=True)
    (tmp_path / "tetrad.d/k.toml").write_text(text)
    return cfg.load(cfg.layer_files(tmp_path, DEFAULTS), None, plugins)


def test_the_plugin_is_found_by_its_entry_point_and_its_table_checked(tmp_path):
    plugins = PluginRegistry([KUBERNETES])
    c = load(tmp_path, '[kubernetes]\nenabled = true\npod_annotations = true\n', plugins)
    assert c.plugins == {"kubernetes": KubernetesConfig(enabled=True, pod_annotations=True)}
    with pytest.raises(cfg.ConfigError, match=r"k.toml: unknown key 'kubernetes.pod_labels'"):
        load(tmp_path, '[kubernetes]\npod_labels = true\n', plugins)
    with pytest.raises(cfg.ConfigError, match=r"kubernetes.cri_sockets must be list"):
        load(tmp_path, '[kubernetes]\ncri_sockets = "/run/x.sock"\n', plugins)


def test_the_packaged_drop_in_enables_it_and_the_admin_can_turn_it_off(tmp_path):
    shipped = tmp_path / "usr"
    (shipped / "tetrad.d").mkdir(parents=True)
    (shipped / "tetrad.toml").write_text(DEFAULTS.read_text())
    (shipped / "tetrad.d/kubernetes.toml").write_text(
        (REPO / "plugins/kubernetes/etc/kubernetes.toml").read_text())
    etc = tmp_path / "etc"
    plugins = PluginRegistry([KUBERNETES])
    c = cfg.load(cfg.layer_files(etc, shipped / "tetrad.toml"), None, plugins)
    assert c.plugins["kubernetes"] == KubernetesConfig(enabled=True)    # the drop-in = the defaults
    (etc / "tetrad.d").mkdir(parents=True)
    (etc / "tetrad.d/kubernetes.toml").write_text("[kubernetes]\nenabled = false\n")
    files = cfg.layer_files(etc, shipped / "tetrad.toml")
    assert files.index(shipped / "tetrad.d/kubernetes.toml") < files.index(etc / "tetrad.d/kubernetes.toml")
    assert cfg.load(files, None, plugins).plugins["kubernetes"].enabled is False


def test_enabled_but_not_installed_is_an_error_naming_the_package(tmp_path):
    with pytest.raises(cfg.ConfigError, match=r"\[kubernetes\] enabled = true, but the kubernetes "
                                              r"plugin is not installed: install tetrad-kubernetes"):
        load(tmp_path, "[kubernetes]\nenabled = true\n", PluginRegistry())
    # a table that does not enable it costs nothing, whatever it holds
    assert load(tmp_path, "[kubernetes]\nenabled = false\nx = 1\n", PluginRegistry()).plugins == {}
    with pytest.raises(cfg.ConfigError, match="unknown key 'kubernetes2'"):
        load(tmp_path, "[kubernetes2]\nenabled = true\n", PluginRegistry())


def test_a_plugin_that_is_not_configured_is_not_imported(tmp_path):
    broken = entry_point("kubernetes", "tetrad_no_such_module:SPEC")
    assert load(tmp_path, "", PluginRegistry([broken])).plugins == {}
    with pytest.raises(cfg.ConfigError, match="installed but cannot be loaded.*reinstall tetrad-kubernetes"):
        load(tmp_path, "[kubernetes]\nenabled = true\n", PluginRegistry([broken]))


@pytest.mark.parametrize("text,problem", [
    ('kubelet_url = "http://127.0.0.1:10250"\nkubelet_token_file = "/t"\n', "must be https"),
    ('kubelet_url = "https://127.0.0.1:10255"\nkubelet_token_file = "/t"\n', "read-only"),
    ('kubelet_url = "https://127.0.0.1:10250"\n', "either kubelet_client_cert"),
    ('kubelet_url = "https://127.0.0.1:10250"\nkubelet_token_file = "/t"\nkubelet_client_cert = "/c"\n'
     'kubelet_client_key = "/k"\n', "either kubelet_client_cert"),
    ('kubelet_url = "https://127.0.0.1:10250"\nkubelet_client_cert = "/c"\n', "go together"),
    ('cri_sockets = ["run/containerd.sock"]\n', "absolute paths"),
    ('kubelet_refresh = "soon"\n', "kubelet_refresh"),
])
def test_the_plugin_checks_its_own_keys(tmp_path, text, problem):
    with pytest.raises(cfg.ConfigError, match=problem):
        load(tmp_path, "[kubernetes]\n" + text, PluginRegistry([KUBERNETES]))


@dataclass(frozen=True)
class ToyConfig:
    enabled: bool = False


class Toy:
    name, pods, closed = "toy", None, False

    def stats(self):
        return {}

    def close(self):
        Toy.closed = True


def test_only_enabled_plugins_start_and_a_failing_start_closes_the_others():
    def fails(config, host):
        raise PluginError("no")
    registry = PluginRegistry()
    registry.register(PluginSpec("a-toy", "toy", ToyConfig, lambda config, host: Toy()))
    registry.register(PluginSpec("b-fails", "x", ToyConfig, fails))
    host = Host("n")
    assert registry.start_enabled({"a-toy": ToyConfig(False), "b-fails": ToyConfig(False)}, host) == []
    with pytest.raises(PluginError):
        registry.start_enabled({"a-toy": ToyConfig(True), "b-fails": ToyConfig(True)}, host)
    assert Toy.closed
    with pytest.raises(TypeError, match="dataclass with `enabled`"):
        PluginSpec("bad", "x", dict, fails)
    assert SPEC.package == "tetrad-kubernetes"


POD_POLICY = """apiVersion: cilium.io/v1alpha1
kind: {kind}
metadata:
  name: p
  namespace: prod
spec:
{scope}  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 1
      type: long
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["7"]
"""


@pytest.mark.parametrize("kind,scope,where,what", [
    ("TracingPolicy", "  podSelector: {}\n", "spec.podSelector", "podSelector"),
    ("TracingPolicyNamespaced", "", "kind", "TracingPolicyNamespaced"),
])
def test_pod_scoped_policies_are_refused_without_the_plugin_naming_it(kind, scope, where, what):
    policy = parse(POD_POLICY.format(kind=kind, scope=scope), "p.yaml")
    loader = FakeLoader()
    registry = PolicyRegistry(loader, admit=workloads.admission(False))
    registry.reconcile("directory", [Desired("p.yaml", "d", policy)])
    (entry,) = registry.entries()
    assert entry.state == "error" and loader.loaded == []
    assert f"{where}: {what} needs pod identity from the Kubernetes plugin: install " \
           "tetrad-kubernetes and set [kubernetes] enabled = true" in entry.error
    with_pods = PolicyRegistry(loader, admit=workloads.admission(True))
    assert workloads.admission(True)(policy) == [] and with_pods.errors == 0
