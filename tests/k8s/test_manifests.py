"""The Kubernetes manifests, checked offline as a cluster would check them and then some: every kustomization
under ``k8s/`` renders with the pinned kubectl, every object validates against the Kubernetes 1.37 schemas
(strict: an unknown field fails) or its vendored CRD schema, and the rendered objects keep the policies of
issue 13 — restricted containers with requests and limits, probes on serving, pinned images in prod, the
PodDisruptionBudget, HPA and ScaledObject aimed at the Deployment, the Indexed Job's shards reaching
``tripod transform``, and no API token in any pod."""

from __future__ import annotations

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from services.batch.options import SHARD_COUNT_VARIABLE, SHARD_INDEX_VARIABLE
from tests.k8s.conftest import (
    CRDS,
    CUSTOM_RESOURCE_SCHEMAS,
    K8S,
    KUBECTL_VERSION,
    KUBERNETES_VERSION,
    Pod,
    Render,
    component_dirs,
    included_components,
    job_specs,
    kustomization_dirs,
    name,
    pods,
)

REQUIRED_RENDERS = ("base", "overlays/dev", "overlays/prod", "batch")
"""The layout of issue 13; ``k8s/monitoring`` and ``overlays/prod-keda`` are rendered when present."""
PROD_RENDERS = ("overlays/prod", "overlays/prod-keda")

Validators = dict[tuple[str, str], jsonschema.protocols.Validator]


def all_pods(renders: dict[str, Render]) -> list[Pod]:
    found = [pod for r in renders.values() for pod in pods(r)]
    assert found, "no pod template rendered anywhere under k8s/"
    return found


def serving_pods(renders: dict[str, Render]) -> list[Pod]:
    found = [pod for pod in all_pods(renders) if pod.owner["kind"] == "Deployment"]
    assert found, "no Deployment rendered anywhere under k8s/"
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to labels; empty selects nothing
    here, since an empty PDB or HPA selector would take every pod of the namespace."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def namespace(item: dict[str, Any]) -> str | None:
    value: str | None = item.get("metadata", {}).get("namespace")
    return value


QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
SUFFIXES = {
    None: Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}  # fmt: skip


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``100m``, ``"1"``, ``512Mi``, ``1e3``) as a number."""
    match = QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match[1]) * SUFFIXES[match[2]]


def tripod_arguments(container: dict[str, Any]) -> list[str] | None:
    """What follows ``tripod`` in the container's command line, or None when it does not run the CLI: the
    console script (``tripod …``) or the module (``python -m tripod.cli …``), after the Bento image's
    ``entrypoint.sh`` if present."""
    argv = [*container.get("command", []), *container.get("args", [])]
    while argv and Path(argv[0]).name == "entrypoint.sh":
        argv = argv[1:]
    if argv and Path(argv[0]).name == "tripod":
        return argv[1:]
    if len(argv) >= 3 and Path(argv[0]).name.startswith("python") and argv[1:3] == ["-m", "tripod.cli"]:
        return argv[3:]
    return None


def option(arguments: list[str], flag: str) -> str | None:
    """The value of ``--flag value`` or ``--flag=value`` in a command line."""
    for position, argument in enumerate(arguments):
        if argument == flag and position + 1 < len(arguments):
            return arguments[position + 1]
        if argument.startswith(f"{flag}="):
            return argument.split("=", 1)[1]
    return None


def image_is_pinned(image: str) -> bool:
    """``name:tag`` with a tag other than ``latest``, or a digest (``name@sha256:…``)."""
    if "@" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


# Tools and layout.


def test_the_pinned_kubectl_is_the_one_run(kubectl: Path) -> None:
    finished = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert json.loads(finished.stdout)["clientVersion"]["gitVersion"] == KUBECTL_VERSION


def test_kubernetes_validate_has_the_chosen_schemas() -> None:
    assert kubernetes_validate.latest_version() == KUBERNETES_VERSION


def test_the_layout_of_issue_13_is_there() -> None:
    missing = [directory for directory in REQUIRED_RENDERS if directory not in kustomization_dirs()]
    assert not missing, f"k8s/ has no kustomization in {missing}"


def test_every_component_is_included_by_an_overlay() -> None:
    included = {c for d in kustomization_dirs() for c in included_components(K8S / d)}
    unused = [str(c.relative_to(K8S)) for c in component_dirs() if c.resolve() not in included]
    assert not unused, f"Components no overlay includes, so never rendered or validated: {unused}"


def test_every_vendored_crd_schema_is_named_in_source_md() -> None:
    source = (CRDS / "SOURCE.md").read_text()
    files = sorted(path.name for path in CRDS.glob("*.json"))
    assert files == sorted(CUSTOM_RESOURCE_SCHEMAS.values())
    assert [f for f in files if f not in source] == []


def test_a_field_the_crd_does_not_declare_is_refused(crd_validators: Validators) -> None:
    scaled_object: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "tripod"}, "triggers": [{"type": "cpu", "metadata": {}}]},
    }
    validator = crd_validators[("keda.sh/v1alpha1", "ScaledObject")]
    assert list(validator.iter_errors(scaled_object)) == []
    scaled_object["spec"]["scaleTargetRef"]["nmae"] = "tripod"
    (error,) = validator.iter_errors(scaled_object)
    assert "'nmae' was unexpected" in error.message


# Rendering and schemas, per kustomization.


@pytest.mark.parametrize("directory", kustomization_dirs())
def test_renders(renders: dict[str, Render], directory: str) -> None:
    rendered = renders[directory]
    assert rendered.error is None, f"k8s/{directory}: {rendered.error}"
    assert rendered.objects, f"k8s/{directory} renders no object"


@pytest.mark.parametrize("directory", kustomization_dirs())
def test_every_object_validates_against_its_schema(
    renders: dict[str, Render], crd_validators: Validators, directory: str
) -> None:
    problems = []
    for item in renders[directory].objects:
        where = f"{item.get('kind')}/{name(item)} ({item.get('apiVersion')})"
        validator = crd_validators.get((item.get("apiVersion", ""), item.get("kind", "")))
        if validator is not None:
            problems += [
                f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(item)
            ]
            continue
        try:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{where}: unknown kind, neither in Kubernetes {KUBERNETES_VERSION} nor vendored in k8s/crds/"
            )
    assert not problems, f"k8s/{directory}:\n" + "\n".join(problems)


# Policies, over every render.


def test_containers_run_restricted(renders: dict[str, Render]) -> None:
    """Non-root, no privilege escalation, no capabilities, a read-only root filesystem: init containers too."""
    problems = []
    for pod in all_pods(renders):
        pod_context = pod.spec.get("securityContext", {})
        for what, container in pod.containers():
            context = container.get("securityContext", {})
            where = f"{pod.where} {what}"
            if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
                problems.append(f"{where}: runAsNonRoot is not true (pod or container)")
            if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
                problems.append(f"{where}: runAsUser is 0")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in context.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if context.get("capabilities", {}).get("add"):
                problems.append(f"{where}: capabilities add {context['capabilities']['add']}")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if context.get("privileged"):
                problems.append(f"{where}: privileged")
    assert not problems, "\n".join(problems)


def test_pods_use_the_runtime_default_seccomp_profile(renders: dict[str, Render]) -> None:
    problems = []
    for pod in all_pods(renders):
        pod_profile = pod.spec.get("securityContext", {}).get("seccompProfile", {}).get("type")
        for what, container in pod.containers():
            profile = container.get("securityContext", {}).get("seccompProfile", {}).get("type", pod_profile)
            if profile not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{pod.where} {what}: seccompProfile {profile}")
    assert not problems, "\n".join(problems)


def test_containers_have_cpu_and_memory_requests_and_limits(renders: dict[str, Render]) -> None:
    problems = []
    for pod in all_pods(renders):
        for what, container in pod.containers():
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                if request is None or limit is None:
                    problems.append(f"{pod.where} {what}: {resource} request {request}, limit {limit}")
                elif quantity(request) > quantity(limit):
                    problems.append(f"{pod.where} {what}: {resource} request {request} above limit {limit}")
    assert not problems, "\n".join(problems)


def test_serving_containers_have_startup_readiness_and_liveness_probes(renders: dict[str, Render]) -> None:
    problems = []
    for pod in serving_pods(renders):
        for what, container in pod.containers(init=False):
            ports = {port.get("name") for port in container.get("ports", [])} | {
                port.get("containerPort") for port in container.get("ports", [])
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{pod.where} {what}: no {probe}")
                    continue
                port = container[probe].get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    problems.append(
                        f"{pod.where} {what}: {probe} on port {port!r} the container does not open"
                    )
    assert not problems, "\n".join(problems)


def test_pods_follow_the_label_and_port_conventions(renders: dict[str, Render]) -> None:
    problems = []
    for pod in all_pods(renders):
        expected = {
            "app.kubernetes.io/name": "tripod",
            "app.kubernetes.io/part-of": "tripod",
            "app.kubernetes.io/component": "serving"
            if pod.owner["kind"] == "Deployment"
            else "batch-transform",
        }
        wrong = {key: pod.labels.get(key) for key, value in expected.items() if pod.labels.get(key) != value}
        if wrong:
            problems.append(f"{pod.where}: pod labels {wrong}, expected {expected}")
    for pod in serving_pods(renders):
        for what, container in pod.containers(init=False):
            if {"name": "http", "containerPort": 8080} not in [
                {key: port.get(key) for key in ("name", "containerPort")}
                for port in container.get("ports", [])
            ]:
                problems.append(f"{pod.where} {what}: no containerPort 8080 named http")
    assert not problems, "\n".join(problems)


def test_the_service_routes_http_to_the_serving_pods(renders: dict[str, Render]) -> None:
    problems = []
    for rendered in renders.values():
        for deployment in rendered.of_kind("Deployment"):
            labels = deployment["spec"]["template"]["metadata"].get("labels", {})
            services = [
                s
                for s in rendered.of_kind("Service")
                if s["spec"].get("selector") and selects({"matchLabels": s["spec"]["selector"]}, labels)
            ]
            if not services:
                problems.append(f"{rendered.directory}: no Service selects Deployment/{name(deployment)}")
            for service in services:
                if not any(port.get("targetPort") in ("http", 8080) for port in service["spec"]["ports"]):
                    problems.append(f"{rendered.directory} Service/{name(service)}: no port targets http")
    assert not problems, "\n".join(problems)


def test_the_pod_disruption_budget_selects_the_deployments_pods(renders: dict[str, Render]) -> None:
    problems = []
    checked = 0
    for rendered in renders.values():
        deployments = rendered.of_kind("Deployment")
        budgets = rendered.of_kind("PodDisruptionBudget")
        for budget in budgets:
            checked += 1
            selected = [
                d
                for d in deployments
                if namespace(d) == namespace(budget)
                and selects(budget["spec"].get("selector", {}), d["spec"]["template"]["metadata"]["labels"])
            ]
            if not selected:
                problems.append(
                    f"{rendered.directory} PodDisruptionBudget/{name(budget)} selects no Deployment"
                )
        for deployment in deployments:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if not any(selects(b["spec"].get("selector", {}), labels) for b in budgets):
                problems.append(
                    f"{rendered.directory}: no PodDisruptionBudget selects Deployment/{name(deployment)}"
                )
    assert checked, "no PodDisruptionBudget rendered anywhere under k8s/"
    assert not problems, "\n".join(problems)


def test_the_hpa_targets_the_deployment(renders: dict[str, Render]) -> None:
    problems = []
    assert renders["overlays/prod"].of_kind("HorizontalPodAutoscaler"), "k8s/overlays/prod renders no HPA"
    for rendered in renders.values():
        deployments = {(namespace(d), name(d)) for d in rendered.of_kind("Deployment")}
        for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
            where = f"{rendered.directory} HorizontalPodAutoscaler/{name(hpa)}"
            target = hpa["spec"]["scaleTargetRef"]
            if hpa["apiVersion"] != "autoscaling/v2":
                problems.append(f"{where}: apiVersion {hpa['apiVersion']}, not autoscaling/v2")
            if (target.get("kind"), target.get("apiVersion")) != ("Deployment", "apps/v1"):
                problems.append(f"{where}: targets {target.get('apiVersion')} {target.get('kind')}")
            if (namespace(hpa), target.get("name")) not in deployments:
                problems.append(
                    f"{where} (namespace {namespace(hpa)}) targets {target.get('name')!r}, but the render's "
                    f"Deployments (namespace, name) are {sorted(deployments, key=str)}"
                )
            if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
                problems.append(f"{where}: minReplicas above maxReplicas")
    assert not problems, "\n".join(problems)


def test_the_hpa_states_its_scaling_behavior(renders: dict[str, Render]) -> None:
    problems = [
        f"{rendered.directory} HorizontalPodAutoscaler/{name(hpa)}: no behavior.{direction}"
        for rendered in renders.values()
        for hpa in rendered.of_kind("HorizontalPodAutoscaler")
        for direction in ("scaleUp", "scaleDown")
        if direction not in hpa["spec"].get("behavior", {})
    ]
    assert not problems, "\n".join(problems)


def test_the_scaled_object_targets_the_deployment(renders: dict[str, Render]) -> None:
    problems = []
    checked = 0
    for rendered in renders.values():
        deployments = {(namespace(d), name(d)) for d in rendered.of_kind("Deployment")}
        for scaled in rendered.of_kind("ScaledObject"):
            checked += 1
            where = f"{rendered.directory} ScaledObject/{name(scaled)}"
            target = scaled["spec"]["scaleTargetRef"]
            # KEDA's defaults: a Deployment of apps/v1.
            if (target.get("kind", "Deployment"), target.get("apiVersion", "apps/v1")) != (
                "Deployment",
                "apps/v1",
            ):
                problems.append(f"{where}: targets {target.get('apiVersion')} {target.get('kind')}")
            if (namespace(scaled), target.get("name")) not in deployments:
                problems.append(
                    f"{where} (namespace {namespace(scaled)}) targets {target.get('name')!r}, but the render's "
                    f"Deployments (namespace, name) are {sorted(deployments, key=str)}"
                )
            rivals = [
                name(hpa)
                for hpa in rendered.of_kind("HorizontalPodAutoscaler")
                if hpa["spec"]["scaleTargetRef"].get("name") == target.get("name")
            ]
            if rivals:
                problems.append(f"{where}: KEDA's own HPA would fight HorizontalPodAutoscaler {rivals}")
    assert checked, "no ScaledObject rendered: k8s/components/keda is rendered through no overlay"
    assert not problems, "\n".join(problems)


def test_prod_images_are_pinned(renders: dict[str, Render]) -> None:
    problems = []
    images = 0
    for directory in PROD_RENDERS:
        if directory not in renders:
            continue
        for pod in pods(renders[directory]):
            for what, container in pod.containers():
                images += 1
                if not image_is_pinned(container.get("image", "")):
                    problems.append(f"{pod.where} {what}: image {container.get('image')!r} has no pinned tag")
    assert images, "k8s/overlays/prod renders no container"
    assert not problems, "\n".join(problems)


def test_prod_servers_require_api_keys_from_the_secret_and_log_json(renders: dict[str, Render]) -> None:
    """Every prod overlay turns authentication on (issue 18): the keys file mounted read-only from the Secret
    ``tripod-auth-keys`` (required, so no pod starts open) and named by TRIPOD_AUTH_KEYS; dev stays open."""
    for directory in (*PROD_RENDERS, "overlays/prod-variants", "overlays/dev"):
        serving = [
            p for p in pods(renders[directory]) if p.labels.get("app.kubernetes.io/component") == "serving"
        ]
        assert serving, directory
        for pod in serving:
            (container,) = [c for c in pod.spec["containers"] if c["name"] == "tripod"]
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            if directory == "overlays/dev":
                assert "TRIPOD_AUTH_KEYS" not in env and "auth-keys" not in volumes
                continue
            assert (
                env["TRIPOD_AUTH_KEYS"] == "/etc/tripod/auth/keys.yaml" and env["TRIPOD_LOG_FORMAT"] == "json"
            )
            assert volumes["auth-keys"]["secret"] == {
                "secretName": "tripod-auth-keys",
                "defaultMode": 0o440,
                "optional": False,
            }
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["auth-keys"] == {
                "name": "auth-keys",
                "mountPath": "/etc/tripod/auth",
                "readOnly": True,
            }


def test_the_indexed_job_shards_reach_tripod_transform(renders: dict[str, Render]) -> None:
    """Kubernetes sets JOB_COMPLETION_INDEX in each pod; the count must be the Job's ``completions``, in
    TRIPOD_SHARD_COUNT; a failed index is retried alone (backoffLimitPerIndex) up to maxFailedIndexes."""
    problems = []
    indexed = [
        (where, spec)
        for where, spec in job_specs(renders["batch"])
        if spec.get("completionMode") == "Indexed"
    ]
    assert any(" Job/" in where for where, _ in indexed), (
        "k8s/batch renders no Job with completionMode: Indexed"
    )
    for where, spec in indexed:
        completions = spec.get("completions")
        for key in ("completions", "backoffLimitPerIndex", "maxFailedIndexes"):
            if not isinstance(spec.get(key), int):
                problems.append(f"{where}: {key} is {spec.get(key)!r}, not a number")
        runs = [
            (container, arguments)
            for container in spec["template"]["spec"]["containers"]
            if (arguments := tripod_arguments(container)) is not None and arguments[:1] == ["transform"]
        ]
        if len(runs) != 1:
            problems.append(f"{where}: {len(runs)} containers run `tripod transform`, expected 1")
        for container, arguments in runs:
            env = {item["name"]: item for item in container.get("env", [])}
            count = env.get(SHARD_COUNT_VARIABLE, {}).get("value")
            if count != str(completions) and option(arguments, "--shard-count") != str(completions):
                problems.append(f"{where}: {SHARD_COUNT_VARIABLE}={count!r}, completions {completions}")
            if option(arguments, "--shard-count") not in (None, str(completions)):
                problems.append(f"{where}: --shard-count {option(arguments, '--shard-count')} ≠ completions")
            if SHARD_INDEX_VARIABLE in env:
                problems.append(f"{where}: sets {SHARD_INDEX_VARIABLE}, which Kubernetes sets per index")
            if option(arguments, "--shard-index") not in (None, f"$({SHARD_INDEX_VARIABLE})"):
                problems.append(f"{where}: --shard-index {option(arguments, '--shard-index')} is fixed")
    assert not problems, "\n".join(problems)


def test_batch_jobs_run_tripod_transform(renders: dict[str, Render]) -> None:
    problems = []
    specs = job_specs(renders["batch"])
    assert {where.split()[1].split("/")[0] for where, _ in specs} >= {"Job", "CronJob"}, specs
    for where, spec in specs:
        for container in spec["template"]["spec"]["containers"]:
            arguments = tripod_arguments(container)
            if arguments is None or arguments[:1] != ["transform"]:
                command = [*container.get("command", []), *container.get("args", [])]
                problems.append(f"{where} container {container.get('name')}: runs {command}")
    assert not problems, "\n".join(problems)


def test_no_pod_gets_an_api_token_and_pods_use_tripods_service_account(renders: dict[str, Render]) -> None:
    """Tripod calls no Kubernetes API: its ServiceAccount mounts no token, and every pod runs under a
    ServiceAccount its own render creates (``kubectl apply -k DIR`` alone gives a working set)."""
    problems = []
    accounts = 0
    for rendered in renders.values():
        for account in rendered.of_kind("ServiceAccount"):
            accounts += 1
            if account.get("automountServiceAccountToken") is not False:
                problems.append(
                    f"{rendered.directory} ServiceAccount/{name(account)}: automountServiceAccountToken not false"
                )
        own = {(namespace(a), name(a)) for a in rendered.of_kind("ServiceAccount")}
        for pod in pods(rendered):
            account_name = pod.spec.get("serviceAccountName")
            if (namespace(pod.owner), account_name) not in own:
                problems.append(
                    f"{pod.where}: serviceAccountName {account_name!r} is not a ServiceAccount of k8s/{rendered.directory}"
                )
            if pod.spec.get("automountServiceAccountToken") is True:
                problems.append(f"{pod.where}: automountServiceAccountToken true")
    assert accounts, "no ServiceAccount rendered anywhere under k8s/"
    assert not problems, "\n".join(problems)


# The helpers the policies stand on.


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("registry.example.com/tripod:0.1.0", True),
        ("registry.example.com:5000/tripod:0.1.0", True),
        ("tripod@sha256:" + "0" * 64, True),
        ("tripod:latest", False),
        ("tripod", False),
        ("registry.example.com:5000/tripod", False),
    ],
    ids=["tag", "port-and-tag", "digest", "latest", "bare", "port-no-tag"],
)
def test_image_is_pinned(image: str, pinned: bool) -> None:
    assert image_is_pinned(image) is pinned


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("100m", Decimal("0.1")),
        ("2", Decimal(2)),
        (1, Decimal(1)),
        ("512Mi", Decimal(2**29)),
        ("1G", Decimal(10**9)),
    ],
    ids=["milli", "string", "int", "binary", "decimal"],
)
def test_quantity(value: str | int, number: Decimal) -> None:
    assert quantity(value) == number


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"matchLabels": {"app": "tripod"}}, True),
        ({"matchLabels": {"app": "tripod", "tier": "batch"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["serving"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["serving"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, True),
        ({}, False),
    ],
    ids=["labels", "extra-label", "in", "not-in", "does-not-exist", "empty"],
)
def test_selects(selector: dict[str, Any], selected: bool) -> None:
    assert selects(selector, {"app": "tripod", "tier": "serving"}) is selected


@pytest.mark.parametrize(
    ("container", "arguments"),
    [
        ({"command": ["tripod", "transform", "--input", "x"]}, ["transform", "--input", "x"]),
        (
            {"command": ["/env/docker/entrypoint.sh", "python", "-m", "tripod.cli"], "args": ["transform"]},
            ["transform"],
        ),
        ({"args": ["serve"]}, None),
        ({"command": ["sh", "-c", "tripod transform"]}, None),
    ],
    ids=["script", "module-after-entrypoint", "image-entry", "shell"],
)
def test_tripod_arguments(container: dict[str, Any], arguments: list[str] | None) -> None:
    assert tripod_arguments(container) == arguments
