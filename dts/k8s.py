"""Kubernetes manifests rendered from the pool declaration: a Deployment and a KEDA ScaledObject per pool.

    files = render(settings, config_text, image="registry.example.com/dts-worker:1.0")   # {file: [manifest, ...]}
    write(files, Path("deploy/k8s"))                                   # one YAML file each, atomically
    python scale.py k8s [--output DIR] [--image TAG]                   # both (`make k8s`)

Every Deployment runs the engines' one worker entry point (`dts.naming.launch_argv`) in the worker image,
with the config file in a ConfigMap mounted where the image reads it, the broker URL from a Secret the user
creates (a template is written, never a password), the image's own health check as probes, and
terminationGracePeriodSeconds = engine.stop_timeout. KEDA scales each pool on its queues' ready messages.
No cluster is needed or contacted: the output is validated offline in tests/test_k8s.py. A renderer, not an engine: nothing here runs workers.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dts.config import TLS_ENV, PoolSettings, Settings
from dts.config.schema import mount_parts
from dts.engines.containers import CONFIG_IN_IMAGE
from dts.errors import CliError, ExitCode, excerpt
from dts.files import write_atomic
from dts.naming import launch_argv

# Names of the objects every pool shares, and the labels of a pool's objects.
APP_LABEL = "app.kubernetes.io/name"
APP = "dts"
POOL_LABEL = "dts/pool"
CONFIG_MAP = "dts-config"
SECRET = "dts-broker"  # created by the user: key SECRET_KEY = the broker URL
SECRET_KEY = "url"
SECRET_PLACEHOLDER = "amqp://USER:PASSWORD@BROKER_HOST:5672/VHOST"
TRIGGER_AUTH = "dts-rabbitmq"
CONFIG_KEY = Path(CONFIG_IN_IMAGE).name  # test-config.yml, mounted at CONFIG_IN_IMAGE
CONFIG_HASH_ANNOTATION = "dts/config-sha256"  # a changed config rolls the pods
CONTAINER = "worker"
UID = 10001  # the Dockerfile's USER 10001:10001
TMP_SIZE = "64Mi"  # compose mounts a tmpfs at /tmp (HOME=/tmp in the image); here a memory emptyDir

# The image's health check (Dockerfile HEALTHCHECK): ping this pod's own worker. Each run starts a Python
# process (about a CPU-second), so it runs every minute, like the image's --interval=60s --timeout=20s.
HEALTH_CHECK = ["python", "-m", "dts", "worker", "--ping"]
PROBE_PERIOD = 60  # seconds between checks
PROBE_TIMEOUT = 20  # seconds one check may take
PROBE_FAILURES = 3  # consecutive failures before not-ready / restart
READY_DELAY = 10  # first readiness check: a worker answers ping a few seconds after start
LIVE_DELAY = 30  # first liveness check: the image's --start-period=30s

# Resources per worker pod. Measured here (PSS, idle prefork workers): ~54 MiB at concurrency 1, ~120 MiB at
# 4, i.e. ~32 MiB for the main process + ~22 MiB per slot; tasks' own memory comes on top.
CPU_REQUEST_PER_SLOT_M = 100  # millicores requested per execution slot
CPU_LIMIT_PER_SLOT_M = 1000  # a slot busy on CPU uses at most one core
MEMORY_REQUEST_MI = (64, 32)  # MiB: base + per slot
MEMORY_LIMIT_MI = (256, 64)  # MiB: base + per slot

# KEDA: one rabbitmq trigger per queue (AMQP: counts the ready messages, not the unacknowledged ones).
KEDA_API = "keda.sh/v1alpha1"
TARGET_READY_PER_REPLICA = 20  # ready messages per replica KEDA aims at (KEDA's own default is 20 too)

IMAGE_REF = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?"  # registry host[:port] or the first path part
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # more path parts
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"  # :tag, @digest
)
K8S_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS-1123 label
GENERATED = "# Rendered from the pools in"  # first line of every file written here (stale ones are removed)
KUSTOMIZATION = "kustomization.yaml"
SECRET_FILE = "broker-secret.template.yaml"  # not in the kustomization: `kubectl apply -k` never overwrites it
# broker.tls: the CA (and client certificate) from a Secret the user creates, mounted read-only; the workers find
# the files through $BROKER_TLS_* (dts.config), KEDA's scaler through its TriggerAuthentication
TLS_SECRET = "dts-broker-tls"
TLS_DIR = "/run/secrets/dts-broker-tls"
TLS_FILES = {"ca_file": "ca.pem", "cert_file": "cert.pem", "key_file": "key.pem"}  # broker.tls key -> Secret key
TLS_KEDA = {"ca_file": "ca", "cert_file": "cert", "key_file": "key"}  # broker.tls key -> KEDA's rabbitmq parameter
TLS_SECRET_FILE = "broker-tls-secret.template.yaml"
HOST_VOLUME = "host"  # a pool's own volumes (pools.<name>.volumes): hostPath volumes host-1, host-2, ...


@dataclass(frozen=True)
class ScalingBounds:
    min_replicas: int
    max_replicas: int
    target: int  # ready messages per replica


def scaling_bounds(settings: Settings, pool: PoolSettings) -> ScalingBounds:
    """KEDA's bounds for a pool: the one place they come from. The pool's `autoscale:` range and target, the
    same ones `scale.py auto` keeps to on the other engines; without one, the declared replicas (at least 1: a
    pool at 0 would leave its queues without a consumer) up to engine.max_replicas, TARGET_READY_PER_REPLICA."""
    if pool.autoscale is not None:
        return ScalingBounds(pool.autoscale.min, pool.autoscale.max, pool.autoscale.target)
    low = max(1, pool.replicas)
    return ScalingBounds(low, max(low, settings.engine.max_replicas), TARGET_READY_PER_REPLICA)


def resources(pool: PoolSettings) -> dict[str, Any]:
    slots = pool.concurrency
    return {
        "requests": {
            "cpu": f"{CPU_REQUEST_PER_SLOT_M * slots}m",
            "memory": f"{MEMORY_REQUEST_MI[0] + MEMORY_REQUEST_MI[1] * slots}Mi",
        },
        "limits": {
            "cpu": f"{CPU_LIMIT_PER_SLOT_M * slots}m",
            "memory": f"{MEMORY_LIMIT_MI[0] + MEMORY_LIMIT_MI[1] * slots}Mi",
        },
    }


def check_image(image: str) -> str:
    if len(image) > 255 or not IMAGE_REF.fullmatch(image):
        raise CliError(
            f"--image {excerpt(image)} is not an image reference: give one like dts-worker:latest or "
            "registry.example.com:5000/dts-worker:1.0",
            ExitCode.USAGE,
        )
    return image


def _labels(pool: str | None = None) -> dict[str, str]:
    return {APP_LABEL: APP, **({POOL_LABEL: pool} if pool else {})}


def _meta(name: str, pool: str | None = None) -> dict[str, Any]:
    return {"name": name, "labels": _labels(pool)}


def _probe(initial_delay: int) -> dict[str, Any]:
    return {
        "exec": {"command": list(HEALTH_CHECK)},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": PROBE_PERIOD,
        "timeoutSeconds": PROBE_TIMEOUT,
        "failureThreshold": PROBE_FAILURES,
    }


def tls_files(settings: Settings) -> dict[str, str]:
    """broker.tls key -> its file name in the TLS Secret, for the files the config names (none without TLS)."""
    tls = settings.broker.tls
    if tls is None:
        return {}
    return {key: name for key, name in TLS_FILES.items() if getattr(tls, key)}


def container(pool: PoolSettings, image: str, tls: dict[str, str]) -> dict[str, Any]:
    """The worker container: the engines' one command, the broker URL (and TLS files) from Secrets, probes."""
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": launch_argv(pool.name),
        "env": [
            {"name": "DTS_POOL", "value": pool.name},
            {"name": "DTS_CONFIG", "value": CONFIG_IN_IMAGE},
            {"name": "LOG_FORMAT", "value": "json"},
            {"name": "BROKER_URL", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": SECRET_KEY}}},
            *({"name": TLS_ENV[key], "value": f"{TLS_DIR}/{name}"} for key, name in tls.items()),
        ],
        "resources": resources(pool),
        "readinessProbe": _probe(READY_DELAY),
        "livenessProbe": _probe(LIVE_DELAY),
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_IN_IMAGE, "subPath": CONFIG_KEY, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *([{"name": "broker-tls", "mountPath": TLS_DIR, "readOnly": True}] if tls else []),
            *(
                {"name": f"{HOST_VOLUME}-{n}", "mountPath": target, "readOnly": mode == "ro"}
                for n, (_, target, mode) in enumerate(map(mount_parts, pool.volumes), 1)
            ),
        ],
    }


def host_volumes(pool: PoolSettings) -> list[dict[str, Any]]:
    """The pool's own volumes as hostPath volumes: the path on the node that runs the pod (no type: a folder
    or a file, as given; the kubelet refuses the pod when it is not there)."""
    return [
        {"name": f"{HOST_VOLUME}-{n}", "hostPath": {"path": host}}
        for n, (host, _, _) in enumerate(map(mount_parts, pool.volumes), 1)
    ]


def device_notes(settings: Settings) -> list[str]:
    """What the manifests leave out, one line per pool with devices: a pod opens a host device through a
    device plugin's resource (or a privileged container), which is the cluster's, not this renderer's."""
    return [
        f"pools.{pool.name}.devices are not in the manifests: Kubernetes gives a pod a device through a device "
        "plugin's resource limit (or a privileged container); see docs/deploy/kubernetes.md"
        for pool in settings.pools.values()
        if pool.devices
    ]


def volumes(tls: dict[str, str]) -> list[dict[str, Any]]:
    """The config (ConfigMap), a memory /tmp, and with TLS the Secret of its files (group-readable only)."""
    out = [
        {"name": "config", "configMap": {"name": CONFIG_MAP}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}},
    ]
    if tls:
        items = [{"key": name, "path": name} for name in tls.values()]
        out.append({"name": "broker-tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440, "items": items}})
    return out


def deployment(settings: Settings, pool: PoolSettings, image: str, config_hash: str) -> dict[str, Any]:
    tls = tls_files(settings)
    pod = {
        "metadata": {"labels": _labels(pool.name), "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
        "spec": {
            "terminationGracePeriodSeconds": math.ceil(settings.engine.stop_timeout),  # warm shutdown, then KILL
            "automountServiceAccountToken": False,  # a worker never talks to the Kubernetes API
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
                **({"fsGroup": UID} if tls else {}),  # the TLS files: group-readable by the worker's group only
            },
            "containers": [container(pool, image, tls)],
            "volumes": [*volumes(tls), *host_volumes(pool)],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(pool.name, pool.name),
        "spec": {"replicas": pool.replicas, "selector": {"matchLabels": _labels(pool.name)}, "template": pod},
    }


def scaled_object(settings: Settings, pool: PoolSettings) -> dict[str, Any]:
    bounds = scaling_bounds(settings, pool)
    triggers = [
        {
            "type": "rabbitmq",
            "metadata": {"protocol": "amqp", "queueName": queue, "mode": "QueueLength", "value": str(bounds.target)},
            "authenticationRef": {"name": TRIGGER_AUTH},
        }
        for queue in pool.queues
    ]
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": _meta(pool.name, pool.name),
        "spec": {
            "scaleTargetRef": {"name": pool.name},  # the pool's Deployment
            "minReplicaCount": bounds.min_replicas,
            "maxReplicaCount": bounds.max_replicas,
            "triggers": triggers,
        },
    }


def render(settings: Settings, config_text: str, image: str) -> dict[str, list[dict[str, Any]]]:
    """Every manifest, per file name (pure). `config_text` is the config file as read: it goes into the
    ConfigMap as is (the broker URL the workers use comes from the Secret, never from here)."""
    check_image(image)
    check_pool_names(settings)
    config_hash = hashlib.sha256(config_text.encode()).hexdigest()
    files: dict[str, list[dict[str, Any]]] = {
        "configmap.yaml": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG_MAP), "data": {CONFIG_KEY: config_text}}
        ],
        "triggerauthentication.yaml": [trigger_authentication(settings)],
    }
    for pool in settings.pools.values():
        files[f"pool-{pool.name}.yaml"] = [
            deployment(settings, pool, image, config_hash),
            scaled_object(settings, pool),
        ]
    files[KUSTOMIZATION] = [
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": list(files)}
    ]
    files[SECRET_FILE] = [_secret(SECRET, {SECRET_KEY: SECRET_PLACEHOLDER})]
    if tls_files(settings):  # a template too: the PEM files go in with `kubectl create secret generic --from-file`
        placeholders = {name: f"<contents of broker.tls.{key}>" for key, name in tls_files(settings).items()}
        files[TLS_SECRET_FILE] = [_secret(TLS_SECRET, {"tls": "enable", **placeholders})]
    return files


def check_pool_names(settings: Settings) -> None:
    for name in settings.pools:
        if not K8S_NAME.fullmatch(name):
            raise CliError(
                f"pool {excerpt(name)} cannot name a Kubernetes Deployment (it must end with a letter or "
                f"digit): rename it in {settings.path.name}",
                ExitCode.USAGE,
            )


def trigger_authentication(settings: Settings) -> dict[str, Any]:
    """KEDA's credentials for the rabbitmq scaler: the broker URL (and TLS files) from the Secrets."""
    tls = tls_files(settings)
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": _meta(TRIGGER_AUTH),
        "spec": {
            "secretTargetRef": [
                {"parameter": "host", "name": SECRET, "key": SECRET_KEY},
                *([{"parameter": "tls", "name": TLS_SECRET, "key": "tls"}] if tls else []),
                *({"parameter": TLS_KEDA[key], "name": TLS_SECRET, "key": name} for key, name in tls.items()),
            ]
        },
    }


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name), "type": "Opaque", "stringData": data}


# --------------------------------------------------------------------------- YAML files


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config file in the ConfigMap) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(docs: list[dict[str, Any]], source: str) -> str:
    head = f"{GENERATED} {source} by dts.k8s (python scale.py k8s); do not edit.\n"
    if any(doc["kind"] == "Secret" for doc in docs):
        head += "# A TEMPLATE: put the real values in a copy (or use kubectl create secret); never commit it.\n"
    return head + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, explicit_start=True, allow_unicode=True)


def _generated(path: Path) -> bool:
    """Written by this module (its first line): read only that many bytes, whatever the file's size."""
    with open(path, "rb") as f:
        return f.read(len(GENERATED)) == GENERATED.encode()


def write(files: dict[str, list[dict[str, Any]]], out_dir: Path, source: str) -> list[Path]:
    """Write each file atomically into out_dir; remove files an earlier run wrote that are no longer rendered
    (a renamed pool). Files not written by this module are left alone."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*.yaml"):
            if old.name not in files and old.is_file() and _generated(old):
                old.unlink()
        written = []
        for name, docs in files.items():
            path = out_dir / name
            write_atomic(path, dump(docs, source))
            written.append(path)
    except OSError as exc:
        raise CliError(
            f"cannot write the manifests to {out_dir} ({exc.strerror or exc}): pass --output DIR, a writable directory",
            ExitCode.USAGE,
        ) from None
    return written
