"""containerSelector/hostSelector: parsing, matching, the kernel flag, and
how the per-hook cgroup lists follow cgroups coming and going."""

from __future__ import annotations

import pytest

from tetrad.decode.cgroup import CgroupRecord
from tetrad.abi import generic as enc
from tetrad.policy.cgroup_scope import CgroupScope, ScopeFull
from tetrad.policy.compile import CompiledHook, Target
from tetrad.policy.schema import PolicyError, parse
from tetrad.policy.workloads import Requirement, Workloads, repo_of
from tests.unit import tables

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
HOOK = "  kprobes:\n  - call: sys_lseek\n    syscall: true\n"
WEB = {"id": "a" * 64, "runtime": "docker", "name": "web", "image": "docker.io/library/nginx:1.25"}
DB = {"id": "b" * 64, "runtime": "podman", "name": "db", "image": "quay.io/pg@sha256:" + "c" * 64}


def scope_of(text: str) -> Workloads | None:
    return parse(HEAD + text + HOOK, "t.yaml").workloads


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        parse(HEAD + text + HOOK, "t.yaml")
    return dict(info.value.problems)


def test_no_selector_means_everywhere():
    assert scope_of("") is None


def test_match_labels_select_by_name_and_exclude_the_host():
    w = scope_of("  containerSelector:\n    matchLabels:\n      name: web\n")
    assert w.matches(WEB) and not w.matches(DB) and not w.matches(None)


def test_empty_container_selector_is_every_container():
    w = scope_of("  containerSelector: {}\n")
    assert w.matches(WEB) and w.matches(DB) and not w.matches(None)


def test_host_selector_is_the_host_only_and_unions_with_containers():
    host = scope_of("  hostSelector: {}\n")
    assert host.matches(None) and not host.matches(WEB)
    both = scope_of("  hostSelector: {}\n  containerSelector:\n    matchLabels:\n      name: db\n")
    assert both.matches(None) and both.matches(DB) and not both.matches(WEB)


@pytest.mark.parametrize("op,values,web,db", [
    ("In", ["docker.io/library/nginx"], True, False),
    ("NotIn", ["docker.io/library/nginx"], False, True),
    ("Exists", None, True, True),
    ("DoesNotExist", None, False, False),
])
def test_match_expressions_on_repo(op, values, web, db):
    vals = f"\n      values: {values}" if values else ""
    w = scope_of(f"  containerSelector:\n    matchExpressions:\n    - key: repo\n      operator: {op}{vals}\n")
    assert (w.matches(WEB), w.matches(DB)) == (web, db)


def test_requirements_follow_label_selector_semantics_for_missing_fields():
    nameless = {"id": "d" * 64, "runtime": "containerd"}
    assert Requirement("name", "NotIn", ("web",)).holds({}) is True
    assert Requirement("name", "In", ("web",)).holds({}) is False
    assert Workloads((Requirement("runtime", "In", ("containerd",)),), False).matches(nameless)


def test_partial_record_is_not_selected_by_name_until_known():
    partial = {"id": "e" * 64, "runtime": "docker", "partial": True}
    by_name = Workloads((Requirement("name", "NotIn", ("web",)),), False)
    by_runtime = Workloads((Requirement("runtime", "In", ("docker",)),), False)
    assert not by_name.matches(partial)
    assert by_runtime.matches(partial)


@pytest.mark.parametrize("image,repo", [
    ("docker.io/library/nginx:1.25", "docker.io/library/nginx"),
    ("localhost:5000/app", "localhost:5000/app"),
    ("localhost:5000/app:v2", "localhost:5000/app"),
    ("quay.io/pg@sha256:abc", "quay.io/pg"),
    ("busybox", "busybox"),
])
def test_repo_drops_tag_and_digest(image, repo):
    assert repo_of(image) == repo


def test_bad_selectors_are_refused_with_paths():
    got = problems("  hostSelector: {matchLabels: {a: b}}\n  containerSelector:\n    matchLabels:\n"
                   "      color: red\n    matchExpressions:\n    - key: name\n      operator: Like\n"
                   "      values: [x]\n    - key: image\n      operator: In\n    - key: id\n"
                   "      operator: Exists\n      values: [x]\n")
    assert "only {}" in got["spec.hostSelector"]
    assert "not a container field" in got["spec.containerSelector.matchLabels.color"]
    assert "not one of" in got["spec.containerSelector.matchExpressions[0].operator"]
    assert "at least one value" in got["spec.containerSelector.matchExpressions[1].values"]
    assert "takes no values" in got["spec.containerSelector.matchExpressions[2].values"]


# ---- podSelector and TracingPolicyNamespaced (Tetragon's combination table) ------

def pod_container(name: str, namespace: str, labels: dict, **extra) -> dict:
    return {"id": name[0] * 64, "runtime": "containerd", "name": name,
            "image": "docker.io/library/nginx:1.25",
            "pod": {"name": f"{name}-0", "namespace": namespace, "uid": "u-" + name,
                    "labels": labels}, **extra}


FRONT = pod_container("front", "prod", {"app": "web", "tier": "front"})
BACK = pod_container("back", "prod", {"app": "web", "tier": "back"})
OTHER = pod_container("other", "dev", {"app": "web", "tier": "front"})
SANDBOX = pod_container("pause", "prod", {"app": "web", "tier": "front"}, sandbox=True)
UNKNOWN_POD = {"id": "9" * 64, "runtime": "cri", "partial": True, "pod": {"uid": "u-9"}}
ALL = {"front": FRONT, "back": BACK, "other": OTHER, "sandbox": SANDBOX, "unknown": UNKNOWN_POD,
       "docker": WEB, "host": None}


def selected(w: Workloads) -> set[str]:
    return {name for name, c in ALL.items() if w.matches(c)}


@pytest.mark.parametrize("spec,chosen", [
    ("  podSelector: {}\n", {"front", "back", "other"}),
    ("  podSelector:\n    matchLabels:\n      tier: front\n", {"front", "other"}),
    ("  podSelector:\n    matchExpressions:\n    - key: k8s:io.kubernetes.pod.namespace\n"
     "      operator: In\n      values: [prod]\n", {"front", "back"}),
    ("  podSelector:\n    matchExpressions:\n    - key: tier\n      operator: NotIn\n"
     "      values: [front]\n", {"back"}),
    # containerSelector second: among the selected pods' containers
    ("  podSelector:\n    matchLabels:\n      app: web\n  containerSelector:\n    matchLabels:\n"
     "      name: back\n", {"back"}),
    # without a pod condition, containerSelector is over every container, pods' too
    ("  containerSelector:\n    matchLabels:\n      repo: docker.io/library/nginx\n",
     {"front", "back", "other", "sandbox", "docker"}),
    # hostSelector adds the host to what the others select
    ("  hostSelector: {}\n  podSelector:\n    matchLabels:\n      tier: back\n", {"back", "host"}),
])
def test_pod_selector_combinations(spec, chosen):
    assert selected(scope_of(spec)) == chosen


def namespaced(spec: str, namespace: str = "prod") -> str:
    return (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata:\n  name: "t"\n'
            f"  namespace: {namespace}\nspec:\n{spec}{HOOK}")


def test_namespaced_policy_applies_to_its_namespace_pods_only():
    w = parse(namespaced(""), "t.yaml").workloads
    assert w.needs_pods and selected(w) == {"front", "back"}
    w = parse(namespaced("  podSelector:\n    matchLabels:\n      tier: front\n"), "t.yaml").workloads
    assert selected(w) == {"front"}
    assert w.describe() == "containers of pods with namespace prod and tier in [front]"


def test_namespaced_policy_needs_a_namespace_and_never_the_host():
    with pytest.raises(PolicyError) as info:
        parse(namespaced("").replace("  namespace: prod\n", ""), "t.yaml")
    assert "name it here" in dict(info.value.problems)["metadata.namespace"]
    with pytest.raises(PolicyError) as info:
        parse(namespaced("", "Not_A_Namespace"), "t.yaml")
    assert "not a namespace name" in dict(info.value.problems)["metadata.namespace"]
    with pytest.raises(PolicyError) as info:
        parse(namespaced("  hostSelector: {}\n"), "t.yaml")
    assert "cannot select the host" in dict(info.value.problems)["spec.hostSelector"]


def test_cluster_policy_namespace_is_ignored_and_other_kinds_refused():
    text = HEAD.replace('name: "t"\n', 'name: "t"\n  namespace: prod\n') + HOOK
    assert parse(text, "t.yaml").workloads is None
    with pytest.raises(PolicyError) as info:
        parse(HEAD.replace("TracingPolicy", "Pod") + HOOK, "t.yaml")
    assert "TracingPolicyNamespaced" in dict(info.value.problems)["kind"]


def test_pod_selector_problems_are_named():
    got = problems("  podSelector:\n    matchLabels:\n      app: [web]\n    matchExpressions:\n"
                   "    - key: ''\n      operator: In\n      values: [x]\n")
    assert "must be a string" in got["spec.podSelector.matchLabels.app"]
    assert "not a label key" in got["spec.podSelector.matchExpressions[0].key"]


def test_describe_pod_scopes():
    assert scope_of("  podSelector: {}\n").describe() == "containers of pods"
    assert scope_of("  hostSelector: {}\n  podSelector:\n    matchLabels:\n      app: web\n"
                    "  containerSelector:\n    matchLabels:\n      name: back\n").describe() == \
        "host or containers with name in [back] of pods with app in [web]"


def test_scoped_hook_sets_the_kernel_flag():
    p = parse(HEAD + "  hostSelector: {}\n" + HOOK, "t.yaml")
    target = Target("syscall", "lseek", function_name="__x64_sys_lseek")
    ch = CompiledHook(p.hooks[0], target, (), "t", False, p.workloads)
    assert tables.hook_struct(ch).flags & enc.HOOK_CGROUPS
    plain = CompiledHook(p.hooks[0], target, (), "t", False, None)
    assert not tables.hook_struct(plain).flags & enc.HOOK_CGROUPS


# ---- the per-hook cgroup lists (fake resolver and programs: pure logic) ----------

class FakePrograms:
    def __init__(self, capacity: int = 100):
        self.entries: set[tuple[int, int]] = set()
        self.capacity = capacity

    def scope_cgroup(self, att, cgroup_id, selected):
        if not selected:
            self.entries.discard((att, cgroup_id))
            return True
        if len(self.entries) >= self.capacity:
            return False
        self.entries.add((att, cgroup_id))
        return True


class FakeResolver:
    def __init__(self, records: dict[str, dict | None]):
        self.records = records

    def for_path(self, path):
        return self.records.get(path)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "system.slice").mkdir()
    (tmp_path / "libpod-web").mkdir()
    return tmp_path


def deliver(scope, resolver, rec):
    """As the pipeline does: a new cgroup comes with its resolved container."""
    scope.on_record(rec, resolver.for_path(rec.path) if rec.made else None)


def hook(workloads):
    return CompiledHook(None, None, None, "t", False, workloads)


def test_scope_lists_matching_cgroups_and_follows_mkdir_and_rmdir(tree):
    resolver = FakeResolver({"/libpod-web": WEB, "/libpod-db": DB})
    programs = FakePrograms()
    scope = CgroupScope(resolver, programs, str(tree))
    web_only = hook(Workloads((Requirement("name", "In", ("web",)),), False))
    scope.track(web_only, 1)
    selected = [(tree / "libpod-web").stat().st_ino]
    assert programs.entries == {(1, selected[0])}
    deliver(scope, resolver, CgroupRecord(True, 900, 1, "/libpod-db"))       # not selected
    deliver(scope, resolver, CgroupRecord(True, 901, 1, "/libpod-web/inner"))
    resolver.records["/libpod-web/inner"] = WEB
    deliver(scope, resolver, CgroupRecord(True, 902, 2, "/libpod-web/inner"))
    assert programs.entries == {(1, selected[0]), (1, 902)}
    deliver(scope, resolver, CgroupRecord(False, 902, 2, "/libpod-web/inner"))
    assert programs.entries == {(1, selected[0])}


def test_partial_record_is_selected_once_the_api_answers(tree):
    resolver = FakeResolver({"/docker-x": {"id": "x" * 64, "runtime": "docker", "partial": True}})
    programs = FakePrograms()
    scope = CgroupScope(resolver, programs, str(tree))
    web_only = hook(Workloads((Requirement("name", "In", ("web",)),), False))
    scope.track(web_only, 1)
    deliver(scope, resolver, CgroupRecord(True, 77, 1, "/docker-x"))
    assert programs.entries == set()
    scope.refresh()
    assert programs.entries == set()                  # still partial
    resolver.records["/docker-x"] = dict(WEB, id="x" * 64)
    scope.refresh()
    assert programs.entries == {(1, 77)}


def test_records_before_any_scoped_policy_are_ignored_and_full_maps_counted(tree):
    resolver = FakeResolver({})
    programs = FakePrograms(capacity=3)
    scope = CgroupScope(resolver, programs, str(tree))
    deliver(scope, resolver, CgroupRecord(True, 5, 1, "/x"))
    host = hook(Workloads(None, True))
    scope.track(host, 1)
    assert len(programs.entries) == 3                 # the tree: root, system.slice, libpod-web
    deliver(scope, resolver, CgroupRecord(True, 6, 1, "/user.slice"))
    assert scope.map_full == 1


def test_a_hook_whose_cgroups_do_not_fit_is_refused_and_not_tracked(tree):
    resolver = FakeResolver({})
    programs = FakePrograms(capacity=2)
    scope = CgroupScope(resolver, programs, str(tree))
    host = hook(Workloads(None, True))
    with pytest.raises(ScopeFull):
        scope.track(host, 1)
    deliver(scope, resolver, CgroupRecord(True, 6, 1, "/user.slice"))
    assert scope.map_full == 0                        # an untracked hook is not updated
