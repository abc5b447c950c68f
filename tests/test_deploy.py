"""The deployment files in ``deploy/``, checked without Docker or a cluster.

- every YAML file parses (``yaml.safe_load_all``);
- the Kubernetes manifests validate, strictly (unknown fields are errors), against the
  Kubernetes JSON schemas shipped inside the ``kubernetes-validate`` wheel (offline); without
  that package only the structural checks below run;
- the manifests' structure: resources, probes, securityContext, the check workers' sandbox
  settings and network policy, references between objects, kustomizations (and a real
  ``kustomize build`` where ``kubectl`` or ``kustomize`` is installed);
- the compose file: services, healthchecks, dependency conditions, limits, named volumes,
  every ``${VAR}`` documented in ``env.example``, no literal secrets, refusal to start
  without them;
- every ``WHARF_*`` variable named anywhere in ``deploy/`` is a field of
  :class:`market.settings.Settings`, and the ConfigMap values are valid settings;
- the Dockerfiles: pinned base images, non-root targets, no remote ``ADD``, what they copy;
- ``entrypoint.sh``: syntax, the roles others call, and ``migrate`` for real on SQLite;
- Flower (optional): the ``monitoring`` extra in the image, the compose profile, the optional
  Kubernetes manifest, and the ``flower`` role refusing to start without basic auth
  (``tests/test_flower.py`` runs it for real against a worker).
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from wharf.market.settings import Settings
from wharf.workers.app import CHECK_QUEUE, QUEUES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "env.example"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
SECCOMP = DEPLOY / "seccomp" / "wharf-sandbox.json"
DOCKERFILES = {"Dockerfile": ("api", "worker", "check-worker"), "Dockerfile.cuda": ("worker",)}

#: Kubernetes versions the manifests must validate against (the minimum, and the newest the
#: installed schemas know).
K8S_MIN_VERSION = "1.33.0"
#: Non-core kinds: no schema in kubernetes-validate; checked structurally here.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}
#: Variables of the ``wharf`` client commands (cli/market.py), not market settings.
CLIENT_VARIABLES = {"WHARF_URL", "WHARF_TOKEN"}
#: Settings that hold credentials: never in a ConfigMap, never a literal in compose.
SECRET_SETTINGS = {
    name
    for name, field in Settings.model_fields.items()
    if field.annotation in (SecretStr, SecretStr | None)
} | {"database_url", "broker_url", "result_backend"}
ENTRYPOINT_ROLES = ("api", "worker", "migrate", "create-admin-token", "flower", "healthcheck")
#: Credentials of opt-in components, not market settings, and the entrypoint role that refuses
#: to start without each. Compose interpolates the services of every profile, active or not, so
#: these cannot be ``${VAR:?}``-required there: they default to empty and the role refuses.
OPT_IN_SECRETS = {"FLOWER_BASIC_AUTH": "flower"}
FLOWER_MANIFEST = K8S / "optional" / "flower.yaml"
FLOWER_PORT = 5555


def env_name(field: str) -> str:
    return "WHARF_" + field.upper()


SETTINGS_VARIABLES = {env_name(name) for name in Settings.model_fields}
SECRET_VARIABLES = {env_name(name) for name in SECRET_SETTINGS}


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/k8s (kustomization files excluded)."""
    return [
        (path, doc)
        for path in yaml_files()
        if K8S in path.parents and path.name != "kustomization.yaml"
        for doc in load_docs(path)
    ]


def base_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_docs(BASE / name)]


def find(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None):
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name:
            if namespace is None or meta.get("namespace") == namespace:
                return obj
    raise AssertionError(f"no {kind} {name} in the manifests")


def workloads() -> list[dict[str, Any]]:
    return [o for o in base_objects() if o["kind"] in ("Deployment", "Job")]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"env.example: not KEY=VALUE: {line!r}"
            out[key] = value
    return out


# --- every YAML file -----------------------------------------------------------------------------


def test_deploy_has_the_expected_files() -> None:
    for rel in (
        "Dockerfile",
        "Dockerfile.cuda",
        "Dockerfile.dockerignore",
        "Dockerfile.cuda.dockerignore",
        "entrypoint.sh",
        "docker-compose.yml",
        "env.example",
        "README.md",
        "seccomp/wharf-sandbox.json",
        "k8s/kustomization.yaml",
        "k8s/base/kustomization.yaml",
        "k8s/keda/kustomization.yaml",
        "k8s/secret.example.yaml",
        "k8s/optional/flower.yaml",
    ):
        assert (DEPLOY / rel).is_file(), rel


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert any(docs), f"{path} holds no document"
    for doc in docs:
        assert doc is None or isinstance(doc, dict)


# --- Kubernetes: schemas -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,doc",
    [(p, d) for p, d in k8s_docs() if d["kind"] not in CUSTOM_KINDS],
    ids=lambda v: str(v.relative_to(DEPLOY)) if isinstance(v, Path) else v["metadata"]["name"],
)
def test_k8s_manifest_matches_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate")
    for version in (K8S_MIN_VERSION, kv.latest_version()):
        try:
            kv.validate(copy.deepcopy(doc), version, strict=True)
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{path.name} {doc['kind']}/{doc['metadata']['name']} {where}: {exc.message}"
            )


def test_the_schema_validation_catches_mistakes() -> None:
    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate")
    bad = copy.deepcopy(find(base_objects(), "Deployment", "wharf-api"))
    pod_spec(bad)["containers"][0]["resourcez"] = {}  # unknown field: strict mode rejects it
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_MIN_VERSION, strict=True)
    bad = copy.deepcopy(find(base_objects(), "Deployment", "wharf-api"))
    pod_spec(bad)["containers"][0]["ports"][0]["containerPort"] = "http"  # wrong type
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_MIN_VERSION, strict=True)


def test_every_k8s_object_has_kind_name_and_namespace() -> None:
    for path, doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        assert doc["metadata"].get("name"), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in ("wharf", "wharf-sandbox"), (path, doc)


# --- Kubernetes: kustomizations ------------------------------------------------------------------


def test_kustomizations_list_existing_files_and_every_base_manifest() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Kustomization"
        for entry in doc.get("resources", []):
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert top["resources"] == ["base"]
    assert "secret.example.yaml" not in json.dumps(top)


def test_kustomization_images_cover_every_container() -> None:
    images = {
        i["name"]: i for i in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]
    }
    for obj in workloads():
        for c in pod_spec(obj)["containers"]:
            name, _, tag = c["image"].partition(":")
            assert name in images, c["image"]
            assert tag and tag != "latest" and images[name]["newTag"] == tag


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl installed")
def test_kustomize_builds_base_and_keda_overlay() -> None:
    built = {}
    for variant in ("k8s", "k8s/keda"):
        done = subprocess.run(
            [*kustomize_command(), str(DEPLOY / variant)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        built[variant] = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = lambda docs: {(d["kind"], d["metadata"]["name"]) for d in docs}  # noqa: E731
    base, keda = kinds(built["k8s"]), kinds(built["k8s/keda"])
    assert ("HorizontalPodAutoscaler", "wharf-worker-check") in base
    assert ("HorizontalPodAutoscaler", "wharf-worker-check") not in keda
    assert ("ScaledObject", "wharf-worker-check") in keda
    assert base - {("HorizontalPodAutoscaler", "wharf-worker-check")} <= keda
    for doc in built["k8s"]:
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "wharf"


# --- Kubernetes: workloads -----------------------------------------------------------------------


def assert_locked_down(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """Requests, limits and a locked-down securityContext; its ServiceAccount in ``objects``."""
    spec = pod_spec(obj)
    name = obj["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False, name
    assert spec["enableServiceLinks"] is False, name  # no WHARF_*_PORT look-alikes
    assert spec["securityContext"]["runAsNonRoot"] is True, name
    assert spec["securityContext"]["runAsUser"] != 0, name
    assert spec["serviceAccountName"], name
    account = find(
        objects,
        "ServiceAccount",
        spec["serviceAccountName"],
        obj["metadata"]["namespace"],
    )
    assert account["automountServiceAccountToken"] is False, name
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    volumes = spec.get("volumes", [])
    assert all(set(v) - {"name"} <= {"emptyDir"} for v in volumes), f"{name}: {volumes}"
    assert all(v["emptyDir"].get("sizeLimit") for v in volumes), name
    for c in spec["containers"]:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= c["resources"][kind].keys(), (name, kind)
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc.get("privileged") is not True, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert c["args"][0] in ENTRYPOINT_ROLES, (name, c["args"])
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, name


def test_every_container_has_requests_limits_and_a_locked_down_security_context() -> None:
    for obj in workloads():
        assert_locked_down(obj, base_objects())


def test_api_deployment_service_probes_and_disruption_budget() -> None:
    objects = base_objects()
    api = find(objects, "Deployment", "wharf-api", "wharf")
    c = pod_spec(api)["containers"][0]
    assert c["args"][0] == "api"
    assert c["ports"][0]["containerPort"] == 8000
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod_spec(api)["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    service = find(objects, "Service", "wharf-api", "wharf")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 8000)
    pdb = find(objects, "PodDisruptionBudget", "wharf-api", "wharf")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = find(objects, "HorizontalPodAutoscaler", "wharf-api", "wharf")
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]


def test_the_api_stops_after_its_waiting_requests_end() -> None:
    """Requests waiting for a job (?wait=, at most WHARF_JOB_WAIT_MAX_S) end before the API
    process is killed: in Kubernetes after the preStop pause, in compose."""
    longest_wait = Settings.model_fields["job_wait_max_s"].default
    spec = pod_spec(find(base_objects(), "Deployment", "wharf-api", "wharf"))
    pause = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(pause[1]) + longest_wait
    grace = re.fullmatch(r"(\d+)s", compose()["services"]["api"]["stop_grace_period"])
    assert grace and int(grace[1]) > longest_wait


def test_workers_consume_real_queues_and_have_liveness_probes() -> None:
    seen = set()
    for obj in workloads():
        c = pod_spec(obj)["containers"][0]
        if c["args"][0] != "worker":
            continue
        queues = c["args"][1].split(",")
        assert set(queues) <= set(QUEUES), c["args"]
        seen.update(queues)
        assert obj["metadata"]["name"] == "wharf-worker-" + "-".join(queues)
        assert c["livenessProbe"]["exec"]["command"][-1] == "healthcheck"
        assert int(c["args"][2]) >= 1
    assert seen == set(QUEUES), "every queue needs a worker Deployment"


def test_check_worker_gets_exactly_what_bubblewrap_needs() -> None:
    objects = base_objects()
    check = find(objects, "Deployment", "wharf-worker-check", "wharf-sandbox")
    spec = pod_spec(check)
    c = spec["containers"][0]
    assert c["args"][:2] == ["worker", CHECK_QUEUE]
    assert spec["hostUsers"] is False
    assert c["securityContext"]["procMount"] == "Unmasked"
    assert c["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    seccomp = spec["securityContext"]["seccompProfile"]
    assert seccomp["type"] == "Localhost" and seccomp["localhostProfile"] == SECCOMP.name
    assert "add" not in c["securityContext"]["capabilities"]
    assert spec["nodeSelector"] == {"wharf.dev/sandbox": "true"}
    assert {t["key"] for t in spec["tolerations"]} == {"wharf.dev/sandbox"}
    config = find(objects, "ConfigMap", "wharf-config", "wharf-sandbox")["data"]
    assert config["WHARF_SANDBOX"] == "bwrap" and config["WHARF_ALLOW_UNSANDBOXED"] == "false"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(config["WHARF_ENV_CACHE_DIR"]).parent) in mounts
    # a check in progress may finish before the pod is killed
    assert spec["terminationGracePeriodSeconds"] > int(config["WHARF_CHECK_TIME_LIMIT_S"])
    # only the check workers need any of this
    for obj in workloads():
        if obj is not check and obj["metadata"]["name"] != "wharf-worker-check":
            assert pod_spec(obj)["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert obj["metadata"]["namespace"] == "wharf"
            for other in pod_spec(obj)["containers"]:
                assert "procMount" not in other["securityContext"]
                assert "appArmorProfile" not in other["securityContext"]


def test_namespaces_enforce_pod_security() -> None:
    objects = base_objects()
    wharf = find(objects, "Namespace", "wharf")["metadata"]["labels"]
    assert wharf["pod-security.kubernetes.io/enforce"] == "restricted"
    sandbox = find(objects, "Namespace", "wharf-sandbox")["metadata"]["labels"]
    assert "pod-security.kubernetes.io/enforce" in sandbox
    namespaces = {o["metadata"]["namespace"] for o in workloads() if o["kind"] == "Deployment"}
    assert namespaces == {"wharf", "wharf-sandbox"}
    # the sandbox namespace holds the check workers and nothing else that runs
    assert {
        o["metadata"]["name"] for o in workloads() if o["metadata"]["namespace"] == "wharf-sandbox"
    } == {"wharf-worker-check"}


# --- Kubernetes: autoscaling ---------------------------------------------------------------------


def test_autoscalers_target_existing_deployments() -> None:
    objects = base_objects()
    hpas = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"wharf-api", "wharf-worker-search", "wharf-worker-check"}
    for hpa in hpas.values():
        ref = hpa["spec"]["scaleTargetRef"]
        target = find(objects, ref["kind"], ref["name"], hpa["metadata"]["namespace"])
        assert "replicas" not in target["spec"], "the HPA owns the replica count"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for name in ("wharf-api", "wharf-worker-search"):
        assert hpas[name]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    check_metric = hpas["wharf-worker-check"]["spec"]["metrics"][0]
    assert check_metric["type"] == "External"
    assert check_metric["external"]["metric"]["name"] == "wharf_check_queue_length"


def test_keda_scaled_object_reads_the_check_queue() -> None:
    docs = load_docs(K8S / "keda" / "scaledobject-worker-check.yaml")
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert scaled["apiVersion"] == auth["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == "wharf-sandbox"
    find(base_objects(), "Deployment", scaled["spec"]["scaleTargetRef"]["name"], "wharf-sandbox")
    assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == CHECK_QUEUE
    assert int(trigger["metadata"]["listLength"]) >= 1
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"password"}
    overlay = yaml.safe_load((K8S / "keda" / "kustomization.yaml").read_text())
    assert "$patch: delete" in overlay["patches"][0]["patch"]
    assert "wharf-worker-check" in overlay["patches"][0]["patch"]


# --- Kubernetes: network policies ----------------------------------------------------------------


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"].get("matchLabels", {})
    return selector.items() <= labels.items()


def test_check_workers_reach_only_postgres_redis_object_store_and_dns() -> None:
    objects = base_objects()
    check = find(objects, "Deployment", "wharf-worker-check", "wharf-sandbox")
    labels = check["spec"]["template"]["metadata"]["labels"]
    policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and o["metadata"]["namespace"] == "wharf-sandbox"
        and selects(o, labels)
    ]
    assert any(p["spec"]["podSelector"] == {} for p in policies), "default deny"
    allowed_ports = {53, 5432, 6379, 9000}
    for policy in policies:
        types = policy["spec"]["policyTypes"]
        if "Ingress" in types:
            assert not policy["spec"].get("ingress"), "nothing may connect to a check worker"
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule to anywhere"
            assert {p["port"] for p in rule["ports"]} <= allowed_ports
            for peer in rule["to"]:
                assert "ipBlock" not in peer
                pod_labels = peer["podSelector"]["matchLabels"]
                assert pod_labels in (
                    {"k8s-app": "kube-dns"},
                    {"wharf.dev/backing-service": "postgresql"},
                    {"wharf.dev/backing-service": "redis"},
                    {"wharf.dev/backing-service": "object-store"},
                ), pod_labels
    # the optional PyPI policy is not applied by default
    assert "optional" not in json.dumps(yaml.safe_load((BASE / "kustomization.yaml").read_text()))


def test_every_namespace_denies_by_default() -> None:
    objects = base_objects()
    for namespace in ("wharf", "wharf-sandbox"):
        deny = find(objects, "NetworkPolicy", "default-deny", namespace)
        assert deny["spec"]["podSelector"] == {}
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


# --- settings: ConfigMaps, Secret template, every WHARF_* name -----------------------------------


def test_every_wharf_variable_in_deploy_is_a_setting() -> None:
    for client_variable in CLIENT_VARIABLES:  # still read by the client commands?
        assert client_variable in (ROOT / "cli" / "market.py").read_text()
    unknown = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for name in re.findall(r"\bWHARF_[A-Z0-9_]+\b", path.read_text(errors="replace")):
                if name not in SETTINGS_VARIABLES | CLIENT_VARIABLES:
                    unknown.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    assert not unknown, f"not fields of market.settings.Settings: {unknown}"


def test_configmaps_hold_valid_non_secret_settings_that_agree() -> None:
    objects = base_objects()
    maps = {
        o["metadata"]["namespace"]: o["data"]
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "wharf-config"
    }
    assert set(maps) == {"wharf", "wharf-sandbox"}
    for data in maps.values():
        assert set(data) <= SETTINGS_VARIABLES
        assert not set(data) & SECRET_VARIABLES
        assert all(isinstance(v, str) for v in data.values()), "ConfigMap values are strings"
        # every value is a valid setting of its type, and with what the Secret holds (URLs
        # and keys) they pass the production checks
        secrets = {
            "database_url": "postgresql+psycopg://db/x",
            "broker_url": "redis://r/0",
            "s3_access_key_id": "wharf-api",
            "s3_secret_access_key": "from-the-secret-store",
        }
        settings = Settings(
            **{k.removeprefix("WHARF_").lower(): v for k, v in data.items()}, **secrets
        )
        assert settings.env == "production" and settings.rate_limit_redis == "redis://r/0"
        with pytest.raises(ValueError, match="WHARF_S3_SECRET_ACCESS_KEY is not set"):
            Settings(
                **{k.removeprefix("WHARF_").lower(): v for k, v in data.items()},
                **{**secrets, "s3_secret_access_key": None},
            )
    shared = maps["wharf"].keys() & maps["wharf-sandbox"].keys()
    assert {"WHARF_CHECK_TIME_LIMIT_S", "WHARF_S3_ENDPOINT_URL"} <= shared
    assert {k: maps["wharf"][k] for k in shared} == {k: maps["wharf-sandbox"][k] for k in shared}


def test_secret_template_is_empty_and_matches_what_pods_reference() -> None:
    secrets = load_docs(K8S / "secret.example.yaml")
    assert {s["metadata"]["namespace"] for s in secrets} == {"wharf", "wharf-sandbox"}
    for secret in secrets:
        assert secret["kind"] == "Secret"
        assert all(v == "" for v in secret["stringData"].values()), "a template holds no values"
        assert set(secret["stringData"]) <= SECRET_VARIABLES | OPT_IN_SECRETS.keys()
        assert {"WHARF_DATABASE_URL", "WHARF_BROKER_URL"} <= set(secret["stringData"])
    names = {s["metadata"]["name"] for s in secrets}
    for obj in workloads():
        for c in pod_spec(obj)["containers"]:
            refs = [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e]
            assert refs and set(refs) <= names
            for e in c.get("env", []):
                assert not e["name"].startswith("WHARF_") or e["name"] not in SECRET_VARIABLES


# --- compose -------------------------------------------------------------------------------------

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^}]*\})*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR:?error}, $$)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else value
        if op in (":?", "?"):
            if empty:
                raise ValueError(f"{name}: {arg}")
            return value
        return value or ""

    parts = text.split("$$")
    return "$".join(VAR.sub(one, part) for part in parts)


def compose_variables() -> dict[str, set[str]]:
    """Each ${VAR} of the compose file and the operators it is used with."""
    out: dict[str, set[str]] = {}
    for m in VAR.finditer(COMPOSE.read_text()):
        out.setdefault(m.group(1), set()).add(m.group(2) or "")
    return out


WHARF_SERVICES = ("migrate", "api", "worker-check", "worker-search", "worker-index")
ONE_SHOT = ("migrate", "minio-init")


def test_compose_services_and_their_health() -> None:
    services = compose()["services"]
    assert set(services) == {
        *WHARF_SERVICES,
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "flower",
    }
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc["restart"] == "no", name
        else:
            assert svc["restart"] == "unless-stopped", name
            assert svc["healthcheck"]["test"], name
            assert not svc["healthcheck"].get("disable"), name
        limits = svc["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= limits.keys(), name
        assert "privileged" not in svc and not svc.get("cap_add"), name
        if "image" in svc and "build" not in svc:
            tag = svc["image"].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] not in ("", "latest"), svc["image"]


def test_compose_startup_order_uses_conditions() -> None:
    services = compose()["services"]
    for name in WHARF_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert deps["redis"]["condition"] == "service_healthy", name
            assert deps["migrate"]["condition"] == "service_completed_successfully", name
            assert deps["minio-init"]["condition"] == "service_completed_successfully", name
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_compose_wharf_services_are_hardened_and_use_entrypoint_roles() -> None:
    services = compose()["services"]
    for name in WHARF_SERVICES:
        svc = services[name]
        assert svc["user"] == "10001:10001" and svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        assert svc["command"][0] in ENTRYPOINT_ROLES, name
        if svc["command"][0] == "worker":
            assert set(svc["command"][1].split(",")) <= set(QUEUES)
        build = svc.get("build")
        if build:
            assert (ROOT / build["dockerfile"]).is_file()
            assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    queues = {
        services[n]["command"][1] for n in WHARF_SERVICES if services[n]["command"][0] == "worker"
    }
    assert queues == set(QUEUES)


def test_compose_check_worker_sandbox_options() -> None:
    svc = compose()["services"]["worker-check"]
    opts = svc["security_opt"]
    seccomp = [o.split("=", 1)[1] for o in opts if o.startswith("seccomp=")]
    assert seccomp and (COMPOSE.parent / seccomp[0]).resolve() == SECCOMP
    assert "apparmor=unconfined" in opts and "systempaths=unconfined" in opts
    assert not any(o in ("seccomp=unconfined", "label=disable") for o in opts)
    assert svc["pids_limit"] > 0
    assert svc["build"]["target"] == "check-worker"
    assert svc["environment"]["WHARF_SANDBOX"] == "bwrap"
    assert svc["environment"]["WHARF_ALLOW_UNSANDBOXED"] == "false"
    # no route out: only internal networks
    networks = compose()["networks"]
    assert all(networks[n].get("internal") for n in svc["networks"])
    # read-only object-store keys, not the API's
    assert "CHECK_S3_ACCESS_KEY_ID" in svc["environment"]["WHARF_S3_ACCESS_KEY_ID"]


def test_compose_volumes_are_named_and_declared() -> None:
    doc = compose()
    used = set()
    for name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith(("/", ".", "~")), f"{name}: host path {volume}"
            used.add(source)
    assert used == set(doc["volumes"])
    assert {"postgres-data", "redis-data", "minio-data"} <= used


def test_compose_variables_are_documented_in_env_example() -> None:
    used = compose_variables()
    documented = env_example()
    assert set(used) == set(documented), "env.example and docker-compose.yml disagree"
    secrets = {name for name, ops in used.items() if ":?" in ops}
    assert secrets >= {
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "WHARF_S3_ACCESS_KEY_ID",
        "WHARF_S3_SECRET_ACCESS_KEY",
        "CHECK_S3_ACCESS_KEY_ID",
        "CHECK_S3_SECRET_ACCESS_KEY",
    }
    for name in secrets:
        assert used[name] == {":?"}, f"{name} must always be required, never defaulted"
        assert documented[name] == "", f"env.example must not hold a value for {name}"
    for name in OPT_IN_SECRETS:
        assert used[name] == {":-"}, f"{name}: empty by default (the entrypoint refuses it)"
        assert documented[name] == "", f"env.example must not hold a value for {name}"


def test_compose_holds_no_literal_secret() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|_AUTH$")
    for name, svc in compose()["services"].items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), name
        for key, value in env.items():
            if secretish.search(key) or key in SECRET_VARIABLES:
                assert isinstance(value, str) and "${" in value, f"{name}: literal {key}"
                for m in VAR.finditer(value):
                    if m.group(1) in OPT_IN_SECRETS:
                        # only in an opt-in service, empty by default, refused by its role
                        assert svc.get("profiles"), f"{name}: {key} outside a profile"
                        assert svc["command"][0] == OPT_IN_SECRETS[m.group(1)], name
                        assert m.group(2) == ":-" and not m.group(3), f"{name}: {key} default"
                    elif m.group(1) not in ("WHARF_S3_BUCKET",):
                        assert m.group(2) == ":?", f"{name}: {key} has a default"
    text = COMPOSE.read_text()
    assert not re.search(r"(?i)(password|secret)\s*[:=]\s*['\"]?(?!\$)[A-Za-z0-9]{6,}", text)


def test_compose_refuses_to_start_without_secrets_and_interpolates_with_them() -> None:
    text = COMPOSE.read_text()
    unfilled = {k: v for k, v in env_example().items()}
    with pytest.raises(ValueError):
        interpolate(text, unfilled)
    filled = {k: (v or f"test-{k.lower()}") for k, v in unfilled.items()}
    doc = yaml.safe_load(interpolate(text, filled))
    env = doc["services"]["api"]["environment"]
    assert env["WHARF_DATABASE_URL"] == (
        "postgresql+psycopg://wharf:test-postgres_password@postgres:5432/wharf"
    )
    assert env["WHARF_BROKER_URL"] == "redis://:test-redis_password@redis:6379/0"
    assert doc["services"]["worker-check"]["environment"]["WHARF_S3_ACCESS_KEY_ID"] == (
        "test-check_s3_access_key_id"
    )
    for name in WHARF_SERVICES:
        env = doc["services"][name]["environment"]
        assert set(k for k in env if k.startswith("WHARF_")) <= SETTINGS_VARIABLES
        settings = Settings(
            **{
                k.removeprefix("WHARF_").lower(): v
                for k, v in env.items()
                if k.startswith("WHARF_")
            }
        )
        assert settings.store == "s3" and settings.database_url and settings.broker_url
        assert settings.env == "production", name  # and it passed the production checks


# --- Dockerfiles ---------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path}: dangling continuation"
    return out


def stages(path: Path) -> dict[str, dict[str, Any]]:
    """Each build stage: its base (image or stage), USER, and instructions."""
    args: dict[str, str] = {}
    result: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for keyword, rest in instructions(path):
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0]
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"#{len(result)}"
            parent = result.get(base)
            current = {
                "base": base,
                "parent": parent,
                "user": parent["user"] if parent else None,
                "body": [],
            }
            result[name] = current
        else:
            assert current is not None, f"{path}: {keyword} before FROM"
            current["body"].append((keyword, rest))
            if keyword == "USER":
                current["user"] = rest
    return result


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_bases_are_pinned_and_targets_run_as_non_root(name: str) -> None:
    path = DEPLOY / name
    all_stages = stages(path)
    for stage in all_stages.values():
        if stage["parent"] is None:
            image = stage["base"]
            assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
            assert not image.endswith(":latest"), image
    for target in DOCKERFILES[name]:
        stage = all_stages[target]
        user = stage["user"]
        assert user and user.split(":")[0] not in ("0", "root"), f"{name} {target}: USER {user}"
        chain, s = [], stage
        while s:
            chain += s["body"]
            s = s["parent"]
        keywords = {k for k, _ in chain}
        assert {"ENTRYPOINT", "HEALTHCHECK"} <= keywords, f"{name} {target}"


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_has_no_remote_add_no_baked_secret_and_lean_apt(name: str) -> None:
    for keyword, rest in instructions(DEPLOY / name):
        if keyword == "ADD":
            assert not re.search(r"\b(https?|git)://|git@", rest), f"ADD {rest}"
        if keyword in ("ENV", "ARG"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", key), f"{keyword} {key}"
                assert key not in SECRET_VARIABLES, f"{keyword} {key}"
        if keyword == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


#: ``pip install ... .`` or ``pip install ... ".[extra,...]"``: the project, with its extras.
PROJECT_INSTALL = re.compile(r"pip install .*\s(['\"]?)\.(?:\[(?P<extras>[\w,-]+)\])?\1(\s|$)")


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_installs_torch_first_then_exactly_the_project_packages(name: str) -> None:
    body = instructions(DEPLOY / name)
    runs = [rest for k, rest in body if k == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    project_at = next(i for i, r in enumerate(runs) if PROJECT_INSTALL.search(r))
    assert torch_at < project_at
    assert ("ARG", "TORCH_VERSION=2.13.0") in body
    copied = {
        rest.split()[0].rstrip("/") for k, rest in body if k == "COPY" and not rest.startswith("--")
    }
    for source in copied:
        assert (ROOT / source).exists(), source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    ignore = (DEPLOY / f"{name}.dockerignore").read_text().split()
    for source in copied | {"deploy/entrypoint.sh"}:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, (
            f"{name}.dockerignore hides {source}"
        )
    assert any("deploy/entrypoint.sh" in rest for k, rest in body if k == "COPY")


def test_check_worker_image_installs_bubblewrap_unprivileged() -> None:
    check = stages(DEPLOY / "Dockerfile")["check-worker"]
    runs = " ".join(rest for k, rest in check["body"] if k == "RUN")
    assert "bubblewrap" in runs and "chmod u-s /usr/bin/bwrap" in runs
    envs = " ".join(rest for k, rest in check["body"] if k == "ENV")
    assert "WHARF_SANDBOX=bwrap" in envs and "WHARF_ALLOW_UNSANDBOXED=false" in envs
    for name in ("api", "worker"):
        body = " ".join(rest for _, rest in stages(DEPLOY / "Dockerfile")[name]["body"])
        assert "bubblewrap" not in body


# --- seccomp profile -----------------------------------------------------------------------------


def test_seccomp_profile_allows_what_bubblewrap_needs_and_denies_the_rest() -> None:
    profile = json.loads(SECCOMP.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert all(rule["action"] == "SCMP_ACT_ERRNO" for rule in profile["syscalls"])
    assert not denied & {"clone", "clone3", "unshare", "mount", "umount2", "pivot_root"}
    assert {"bpf", "kexec_load", "init_module", "ptrace", "setns", "keyctl"} <= denied
    assert {"userfaultfd", "perf_event_open", "open_by_handle_at", "io_uring_setup"} <= denied
    assert {a["architecture"] for a in profile["archMap"]} == {
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
    }


# --- entrypoint ----------------------------------------------------------------------------------


def run_entrypoint(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    base = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": env.get("HOME", "/tmp"),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_entrypoint_syntax_and_roles() -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0
    text = ENTRYPOINT.read_text()
    for role in ENTRYPOINT_ROLES:
        assert re.search(rf"^\s+{re.escape(role)}\)", text, re.M), role


@pytest.mark.services
def test_entrypoint_migrate_upgrades_a_catalog(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    done = run_entrypoint(
        "migrate",
        env={"WHARF_DATABASE_URL": f"sqlite:///{db}", "WHARF_DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "api_tokens", "learnwares", "jobs"} <= tables


@pytest.mark.services
def test_entrypoint_refuses_to_migrate_the_embedded_catalog(tmp_path: Path) -> None:
    done = run_entrypoint("migrate", env={"WHARF_DATA_DIR": str(tmp_path)})
    assert done.returncode == 64
    assert "WHARF_DATABASE_URL" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.services
def test_entrypoint_healthcheck_fails_when_nothing_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("something listens on 127.0.0.1:8000")
    done = run_entrypoint(
        "healthcheck",
        env={
            "WORKER_NODE_FILE": str(tmp_path / "none"),
            "MONITOR_PORT_FILE": str(tmp_path / "none"),
        },
        timeout=30,
    )
    assert done.returncode != 0


@pytest.mark.services
def test_entrypoint_api_role_serves_the_app_from_its_factory(tmp_path: Path) -> None:
    """The api role runs uvicorn with wharf.api.main:create_app, its HTTP protocol and extra
    arguments (here another port); the embedded market of the data folder answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": "/tmp",
        "WHARF_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "api", "--host", "127.0.0.1", "--port", str(port)],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import httpx

        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"the api role exited: {proc.stdout.read()}")
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        else:
            pytest.fail("the api role did not answer within 30 s")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert "server" not in r.headers  # --no-server-header
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / "catalog.db").exists()  # made by the app, in its own process


@pytest.mark.services
def test_entrypoint_usage_lists_every_role() -> None:
    done = run_entrypoint(env={})
    assert done.returncode == 64
    for role in ENTRYPOINT_ROLES:
        assert re.search(rf"^#\s+{re.escape(role)}\b", done.stderr, re.M), role


# --- Flower (optional) ---------------------------------------------------------------------------


def test_monitoring_extra_is_packaged_set_up_and_in_the_image() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(re.fullmatch(r"flower\s*>=\s*2(\.\d+)*", r) for r in extras["monitoring"])
    # CI and `scripts/test` install the test dependencies through setup-env: Flower with them
    setup = (ROOT / "scripts" / "setup-env").read_text()
    installed = re.search(r"pip install .*-e\s+\"\.\[([\w,-]+)\]\"", setup)
    assert installed and {"dev", "monitoring"} <= set(installed[1].split(","))
    for name in DOCKERFILES:
        for keyword, rest in instructions(DEPLOY / name):
            m = PROJECT_INSTALL.search(rest) if keyword == "RUN" else None
            if m and m["extras"]:
                assert set(m["extras"].split(",")) <= extras.keys(), (name, m["extras"])
    # the CPU images: the project with its monitoring extra, Flower pinned as torch is
    build = stages(DEPLOY / "Dockerfile")["build"]["body"]
    run = next(rest for k, rest in build if k == "RUN" and PROJECT_INSTALL.search(rest))
    assert "monitoring" in PROJECT_INSTALL.search(run)["extras"].split(",")
    assert "--constraint /tmp/constraints.txt" in run and "flower==%s" in run
    assert '"${FLOWER_VERSION}"' in run
    assert any(k == "ARG" and re.fullmatch(r"FLOWER_VERSION=\d+\.\d+\.\d+", r) for k, r in build)
    assert re.search(r"python -c \"import [^\"]*\bflower\b", run), "the build imports it"


def test_compose_flower_is_opt_in_authenticated_and_needs_only_the_broker() -> None:
    services = compose()["services"]
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert [n for n, svc in services.items() if "profiles" in svc] == ["flower"]
    assert flower["command"] == ["flower"]
    assert flower["build"] == services["worker-search"]["build"]  # the `worker` image
    assert flower["build"]["target"] == "worker"
    assert flower["depends_on"] == {"redis": {"condition": "service_healthy"}}
    # the broker and its login, nothing else: no catalog, no object-store keys
    env = flower["environment"]
    assert set(env) == {"WHARF_BROKER_URL", *OPT_IN_SECRETS}
    assert env["WHARF_BROKER_URL"] == services["api"]["environment"]["WHARF_BROKER_URL"]
    assert flower["user"] == "10001:10001" and flower["read_only"] is True
    assert flower["cap_drop"] == ["ALL"] and "no-new-privileges:true" in flower["security_opt"]
    assert any(t.startswith("/tmp") for t in flower["tmpfs"])
    assert flower["healthcheck"]["test"] == [
        "CMD",
        "/usr/local/bin/wharf-entrypoint",
        "healthcheck",
    ]
    (published,) = flower["ports"]
    assert published.endswith(f":{FLOWER_PORT}")
    networks = compose()["networks"]
    assert "backend" in flower["networks"]  # Redis
    assert any(not networks[n].get("internal") for n in flower["networks"]), "nothing published"
    # interpolated: the broker URL with Redis's password, the login, a local-only port
    filled = {k: (v or f"test-{k.lower()}") for k, v in env_example().items()}
    doc = yaml.safe_load(interpolate(COMPOSE.read_text(), filled))["services"]["flower"]
    assert doc["environment"]["FLOWER_BASIC_AUTH"] == "test-flower_basic_auth"
    assert doc["ports"] == [f"127.0.0.1:{FLOWER_PORT}:{FLOWER_PORT}"]
    broker = doc["environment"]["WHARF_BROKER_URL"]
    assert broker == "redis://:test-redis_password@redis:6379/0"
    assert Settings(broker_url=broker).broker == broker  # all the Celery app needs
    # without the login, compose still starts the rest: the variable is not `:?`-required
    unset = {k: v for k, v in filled.items() if k not in OPT_IN_SECRETS}
    doc = yaml.safe_load(interpolate(COMPOSE.read_text(), unset))["services"]["flower"]
    assert doc["environment"]["FLOWER_BASIC_AUTH"] == ""  # which the role refuses (below)


def test_k8s_optional_flower_is_locked_down_authenticated_and_not_applied_by_default() -> None:
    docs = load_docs(FLOWER_MANIFEST)
    assert sorted(d["kind"] for d in docs) == [
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:  # applied with kubectl apply -f: no kustomization adds the label
        assert doc["metadata"]["namespace"] == "wharf"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "wharf"
    deployment = find(docs, "Deployment", "wharf-flower", "wharf")
    assert_locked_down(deployment, docs)
    spec = pod_spec(deployment)
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (c,) = spec["containers"]
    assert c["args"] == ["flower"]
    assert c["ports"] == [{"name": "http", "containerPort": FLOWER_PORT, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthcheck", "port": "http"}, probe
    images = {
        i["name"]: i["newTag"]
        for i in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]
    }
    name, _, tag = c["image"].partition(":")
    assert name == "wharf/worker" and tag == images[name]
    # two keys of the existing Secret, each named: not envFrom, which would hand Flower the
    # catalog's and the object store's credentials too
    assert "envFrom" not in c
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert set(refs) == {"WHARF_BROKER_URL", *OPT_IN_SECRETS}
    template = find(load_docs(K8S / "secret.example.yaml"), "Secret", "wharf-secrets", "wharf")
    for variable, ref in refs.items():
        assert ref["name"] == "wharf-secrets" and ref["key"] == variable
        assert ref["key"] in template["stringData"] and not ref.get("optional")
    sandbox = find(
        load_docs(K8S / "secret.example.yaml"), "Secret", "wharf-secrets", "wharf-sandbox"
    )
    assert not set(OPT_IN_SECRETS) & set(sandbox["stringData"]), "check workers never need it"
    service = find(docs, "Service", "wharf-flower", "wharf")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    # reachable on its port only; Redis through the base egress policy
    policy = find(docs, "NetworkPolicy", "flower-ingress", "wharf")
    assert selects(policy, labels) and policy["spec"]["policyTypes"] == ["Ingress"]
    assert {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]} == {FLOWER_PORT}
    assert selects(
        find(base_objects(), "NetworkPolicy", "backing-services-egress", "wharf"), labels
    )
    # optional: no kustomization lists it
    for path in K8S.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(path.read_text()).get("resources", []):
            resolved = (path.parent / entry).resolve()
            assert resolved != FLOWER_MANIFEST.resolve() and resolved != FLOWER_MANIFEST.parent


@pytest.mark.services
@pytest.mark.parametrize(
    "auth",
    [None, "", "ops", ":secret", "ops:", "ops:secret,", "ops:secret,,admin:x"],
    ids=["unset", "empty", "no-password", "no-user", "empty-password", "trailing-comma", "gap"],
)
def test_entrypoint_flower_refuses_to_start_without_basic_auth(
    auth: str | None, tmp_path: Path, closed_port: int
) -> None:
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "data"),
        # were it to start anyway, it would wait for this broker: the timeout fails the test
        "WHARF_BROKER_URL": f"redis://127.0.0.1:{closed_port}/0",
        "MONITOR_PORT_FILE": str(tmp_path / "port"),
        "FLOWER_ADDRESS": "127.0.0.1",
    }
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    done = run_entrypoint("flower", env=env, timeout=30)
    assert done.returncode == 64, done.stderr
    assert done.stderr.startswith("wharf-entrypoint: FLOWER_BASIC_AUTH "), done.stderr
    assert "refusing to start Flower" in done.stderr
    assert not list(tmp_path.iterdir()), "it must stop before anything else"


@pytest.mark.services
def test_entrypoint_healthcheck_asks_flower_when_the_container_runs_it(
    tmp_path: Path, closed_port: int
) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthcheck" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port_file = tmp_path / "flower-port"
    env = {"WORKER_NODE_FILE": str(tmp_path / "none"), "MONITOR_PORT_FILE": str(port_file)}
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            port_file.write_text(f"{server.server_address[1]}\n")
            assert run_entrypoint("healthcheck", env=env, timeout=30).returncode == 0
            port_file.write_text(f"{closed_port}\n")
            done = run_entrypoint("healthcheck", env=env, timeout=30)
            assert done.returncode != 0 and "unhealthy" in done.stderr
        finally:
            server.shutdown()
