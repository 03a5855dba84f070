"""Which processes a policy applies to: `containerSelector` and `hostSelector`.

Tetragon scopes a policy to workloads with spec-level selectors, and refuses
them outside Kubernetes. tetrad gives them a meaning on a plain host:

  containerSelector   a Kubernetes label selector (matchLabels,
                      matchExpressions with In/NotIn/Exists/DoesNotExist)
                      over the fields of a container: `name` and `repo`
                      (Tetragon's two keys) plus `image`, `runtime`, `id`.
                      `{}` selects every container.
  hostSelector        only `{}`: processes in no container.

With neither, a policy applies everywhere. With both, it applies to the
host and to the selected containers. The decision is made in user space
per cgroup, and the kernel filters by cgroup id (the daemon keeps a map of
selected cgroups per hook, tetrad/policy/cgroup_scope.py). Pure: no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from tetrad.policy.errors import describe, kind_of, path_key

KEYS = ("name", "repo", "image", "runtime", "id")
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
    containers: tuple[Requirement, ...] | None    # None: no container is selected
    host: bool

    def matches(self, container: dict | None) -> bool:
        """Whether a process in `container` (None: on the host) is in scope.
        A container whose name or image is still being looked up (the
        record is "partial") is not in scope until it is known, when the
        selector asks for those fields."""
        if container is None:
            return self.host
        if self.containers is None:
            return False
        if container.get("partial") and any(r.key in LATE_KEYS for r in self.containers):
            return False
        fields = container_fields(container)
        return all(r.holds(fields) for r in self.containers)

    def describe(self) -> str:
        parts = ["host"] if self.host else []
        if self.containers == ():
            parts.append("every container")
        elif self.containers:
            parts.append("containers with " + " and ".join(_describe(r) for r in self.containers))
        return " or ".join(parts)


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


def parse(spec: dict) -> tuple[Workloads | None, Problems]:
    """The workload scope of a policy spec, and the problems found (as
    (YAML path, reason) pairs)."""
    problems: Problems = []
    has_containers = "containerSelector" in spec
    has_host = "hostSelector" in spec
    if not (has_containers or has_host):
        return None, problems
    host = False
    if has_host:
        raw = spec["hostSelector"]
        if raw not in (None, {}):
            problems.append(("spec.hostSelector", "only {} is allowed (it selects processes in no container)"))
        host = True
    containers = None
    if has_containers:
        containers = _label_selector(spec["containerSelector"], "spec.containerSelector", problems)
    return Workloads(containers, host), problems


def _label_selector(raw, path: str, problems: Problems) -> tuple[Requirement, ...]:
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
        if _known_key(key, where, problems) and _is_text(value, where, problems):
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
        if not _known_key(key, f"{where}.key", problems):
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


def _known_key(key, path: str, problems: Problems) -> bool:
    if key not in KEYS:
        problems.append((path, f"{describe(key)} is not a container field (known: {', '.join(KEYS)})"))
        return False
    return True
