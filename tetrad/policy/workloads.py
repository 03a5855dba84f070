"""Which processes a policy applies to: `containerSelector`, `hostSelector`,
`podSelector` and the namespace of a `TracingPolicyNamespaced`.

Tetragon scopes a policy to workloads with spec-level selectors, and refuses
them outside Kubernetes. tetrad gives them a meaning on a plain host:

  containerSelector   a Kubernetes label selector (matchLabels,
                      matchExpressions with In/NotIn/Exists/DoesNotExist)
                      over the fields of a container: `name` and `repo`
                      (Tetragon's two keys) plus `image`, `runtime`, `id`.
                      `{}` selects every container.
  hostSelector        only `{}`: processes in no container.
  podSelector         a label selector over the labels of a container's
                      Kubernetes pod, plus the key
                      `k8s:io.kubernetes.pod.namespace` (the pod's
                      namespace); `{}` selects every pod. Needs pod identity:
                      the Kubernetes plugin (tetrad-kubernetes).
  namespace           a TracingPolicyNamespaced applies only to the pods of
                      its metadata.namespace (and never to the host).

With none of them, a policy applies everywhere. Tetragon's rules combine
them: podSelector (and the namespace) choose pods, containerSelector then
chooses among their containers (without a pod condition, among every
container); hostSelector adds the host to whatever the others select. A
pod's sandbox ("pause") container is not one of its containers. The
decision is made in user space per cgroup, and the kernel filters by cgroup
id (the daemon keeps a map of selected cgroups per hook,
tetrad/policy/cgroup_scope.py). Pure: no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from tetrad.policy.errors import describe, kind_of, path_key

KEYS = ("name", "repo", "image", "runtime", "id")
NAMESPACE_KEY = "k8s:io.kubernetes.pod.namespace"      # Tetragon's, in podSelector
PLUGIN_HINT = ("needs pod identity from the Kubernetes plugin: install tetrad-kubernetes "
               "and set [kubernetes] enabled = true")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# Keys whose value may come late (from a runtime API); the others come from
# the cgroup path itself and are known at once.
LATE_KEYS = {"name", "repo", "image"}

Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def holds(self, fields: dict[str, str]) -> bool:
        """Kubernetes label-selector semantics: NotIn and DoesNotExist hold
        for a container that lacks the field."""
        value = fields.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        return value is None


@dataclass(frozen=True)
class Workloads:
    containers: tuple[Requirement, ...] | None    # None: no container selected (without pods)
    host: bool
    pods: tuple[Requirement, ...] | None = None   # podSelector; None: no pod condition
    namespace: str = ""                           # a TracingPolicyNamespaced's

    @property
    def needs_pods(self) -> bool:
        """Whether the scope asks about pods (needs the Kubernetes plugin)."""
        return self.pods is not None or bool(self.namespace)

    def matches(self, container: dict | None) -> bool:
        """Whether a process in `container` (None: on the host) is in scope.
        A container whose name or image is still being looked up (the
        record is "partial") is not in scope until it is known, when the
        selector asks for those fields; one whose pod is not known (yet)
        is in no pod."""
        if container is None:
            return self.host
        if self.needs_pods:
            if not self._pod_matches(container):
                return False
            if self.containers is None:
                return True
        elif self.containers is None:
            return False
        if container.get("partial") and any(r.key in LATE_KEYS for r in self.containers):
            return False
        fields = container_fields(container)
        return all(r.holds(fields) for r in self.containers)

    def _pod_matches(self, container: dict) -> bool:
        pod = container.get("pod") or {}
        if "namespace" not in pod or container.get("sandbox"):
            return False                   # not a known pod's container
        if self.namespace and pod["namespace"] != self.namespace:
            return False
        labels = {**(pod.get("labels") or {}), NAMESPACE_KEY: pod["namespace"]}
        return all(r.holds(labels) for r in self.pods or ())

    def describe(self) -> str:
        parts = ["host"] if self.host else []
        if self.needs_pods:
            what = "containers" if self.containers is None else _containers(self.containers)
            where = [_describe(r) for r in self.pods or ()]
            if self.namespace:
                where.insert(0, f"namespace {self.namespace}")
            parts.append(f"{what} of pods" + (" with " + " and ".join(where) if where else ""))
        elif self.containers is not None:
            parts.append(_containers(self.containers))
        return " or ".join(parts)


def admission(pods_known: bool):
    """The registry's admission check (tetrad/policy/registry.py): without
    pod identity (no Kubernetes plugin running), a policy scoped to pods
    is refused, naming the plugin, rather than loaded to select nothing."""
    def problems(policy) -> list[tuple[str, str]]:
        w = policy.workloads
        if pods_known or w is None or not w.needs_pods:
            return []
        where = "spec.podSelector" if w.pods is not None else "kind"
        what = "podSelector" if w.pods is not None else "TracingPolicyNamespaced"
        return [(where, f"{what} {PLUGIN_HINT}")]
    return problems


def _containers(reqs: tuple[Requirement, ...]) -> str:
    if not reqs:
        return "every container"
    return "containers with " + " and ".join(_describe(r) for r in reqs)


def _describe(r: Requirement) -> str:
    if r.operator in ("Exists", "DoesNotExist"):
        return f"{r.key} {'set' if r.operator == 'Exists' else 'unset'}"
    return f"{r.key} {'in' if r.operator == 'In' else 'not in'} [{', '.join(r.values)}]"


def repo_of(image: str) -> str:
    """The repository of an image reference: without @digest and :tag
    ("docker.io/library/nginx:1.25" -> "docker.io/library/nginx")."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def container_fields(container: dict) -> dict[str, str]:
    fields = {k: container[k] for k in ("name", "image", "runtime", "id") if container.get(k)}
    if "image" in fields:
        fields["repo"] = repo_of(fields["image"])
    return fields


def parse(spec: dict, namespace: str = "") -> tuple[Workloads | None, Problems]:
    """The workload scope of a policy spec, and the problems found (as
    (YAML path, reason) pairs). `namespace`: a TracingPolicyNamespaced's."""
    problems: Problems = []
    has_containers = "containerSelector" in spec
    has_host = "hostSelector" in spec
    has_pods = "podSelector" in spec
    if not (has_containers or has_host or has_pods or namespace):
        return None, problems
    host = False
    if has_host:
        raw = spec["hostSelector"]
        if namespace:
            problems.append(("spec.hostSelector", "a TracingPolicyNamespaced applies to the pods of "
                                                  "its namespace only: it cannot select the host"))
        elif raw not in (None, {}):
            problems.append(("spec.hostSelector", "only {} is allowed (it selects processes in no container)"))
        host = True
    containers = None
    if has_containers:
        containers = _label_selector(spec["containerSelector"], "spec.containerSelector", problems)
    pods = None
    if has_pods:
        pods = _label_selector(spec["podSelector"], "spec.podSelector", problems, _pod_label_key)
    return Workloads(containers, host, pods, namespace), problems


def _label_selector(raw, path: str, problems: Problems, known_key=None) -> tuple[Requirement, ...]:
    known_key = known_key or _known_key
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append((path, f"must be a mapping, not {type(raw).__name__}"))
        return ()
    for key in raw:
        if key not in ("matchLabels", "matchExpressions"):
            problems.append((f"{path}.{path_key(key)}", "unknown field (known: matchExpressions, matchLabels)"))
    out: list[Requirement] = []
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, dict):
        problems.append((f"{path}.matchLabels", "must be a mapping of field: value"))
        labels = {}
    for key, value in labels.items():
        where = f"{path}.matchLabels.{path_key(key)}"
        if known_key(key, where, problems) and _is_text(value, where, problems):
            out.append(Requirement(key, "In", (value,)))
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        problems.append((f"{path}.matchExpressions", "must be a list"))
        exprs = []
    for i, expr in enumerate(exprs):
        where = f"{path}.matchExpressions[{i}]"
        if not isinstance(expr, dict):
            problems.append((where, "must be a mapping with key, operator and values"))
            continue
        unknown = set(expr) - {"key", "operator", "values"}
        if unknown:
            problems.append((where, f"unknown field(s) {', '.join(describe(k) for k in sorted(unknown))}"))
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not known_key(key, f"{where}.key", problems):
            continue
        if op not in OPERATORS:
            problems.append((f"{where}.operator", f"{describe(op)} is not one of {', '.join(OPERATORS)}"))
            continue
        if not isinstance(values, list):
            problems.append((f"{where}.values", "must be a list"))
            continue
        if op in ("In", "NotIn") and not values:
            problems.append((f"{where}.values", f"{op} needs at least one value"))
            continue
        if op in ("Exists", "DoesNotExist") and values:
            problems.append((f"{where}.values", f"{op} takes no values"))
            continue
        if all(_is_text(v, f"{where}.values[{j}]", problems) for j, v in enumerate(values)):
            out.append(Requirement(key, op, tuple(values)))
    return tuple(out)


def _is_text(value, path: str, problems: Problems) -> bool:
    if not isinstance(value, str):
        problems.append((path, f"must be a string, not {kind_of(value)}"))
        return False
    return True


def _pod_label_key(key, path: str, problems: Problems) -> bool:
    """Any label key (the pod's labels are the user's), as a string."""
    if not isinstance(key, str) or not key:
        problems.append((path, f"{describe(key)} is not a label key"))
        return False
    return True


def _known_key(key, path: str, problems: Problems) -> bool:
    if key not in KEYS:
        problems.append((path, f"{describe(key)} is not a container field (known: {', '.join(KEYS)})"))
        return False
    return True
