"""Unit tests (no cluster): the Kubernetes manifests rendered from the pools (dts.k8s, `scale.py k8s`).

No Kubernetes cluster is reachable from here, so the manifests are validated offline: the built-in kinds with
kubernetes-validate (the API's own JSON schemas, strict: unknown fields fail) for Kubernetes 1.30 and 1.37,
KEDA's ScaledObject/TriggerAuthentication with jsonschema against the CRD schemas vendored in tests/schemas/
(closed: unknown fields fail there too). Each validator is shown to reject a broken manifest."""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import ROOT
from test_compose_unit import dockerfile_instruction

import scale
from dts import k8s
from dts.config import load_settings
from dts.engines.containers import CONFIG_IN_IMAGE, worker_template
from dts.engines.image import worker_image
from dts.errors import CliError, ExitCode
from dts.naming import launch_argv

SCHEMAS = ROOT / "tests" / "schemas"
K8S_VERSIONS = ("1.30", "1.37")  # the oldest still common on managed clusters, and kubernetes-validate's newest
SHIPPED = load_settings(ROOT / "test-config.yml")
SHIPPED_TEXT = (ROOT / "test-config.yml").read_text()
IMAGE = "registry.example.com:5000/team/dts-worker:1.0"

THREE_POOLS = """\
pools:
  worker-a: {queues: [queue_a], replicas: 2}
  worker-b: {queues: [queue_b], concurrency: 2, autoscale: {min: 0, max: 5, target: 8}}
  reports-2: {queues: [queue_c, queue_d], replicas: 0, concurrency: 4, execution_pool: threads}
engine: {stop_timeout: 1.5, max_replicas: 7}
"""


# --------------------------------------------------------------------------- validators


def _close(node):
    """Every object schema that lists properties gets additionalProperties: false (unless it says otherwise):
    the API server prunes unknown fields of a custom resource silently; here they fail."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)
    return node


@functools.cache
def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = _close(json.loads((SCHEMAS / f"keda.sh_{kind.lower()}s.v1alpha1.json").read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(doc: dict, version: str = "1.30") -> None:
    """Raise jsonschema.ValidationError (kubernetes_validate.ValidationError is one) if `doc` is invalid."""
    if doc["apiVersion"] == k8s.KEDA_API:
        keda_validator(doc["kind"]).validate(doc)
    else:
        assert kubernetes_validate.validate(doc, version, strict=True) == version


def manifests(files: dict) -> list[dict]:
    return [doc for name, docs in files.items() if name != k8s.KUSTOMIZATION for doc in docs]


def of_kind(files: dict, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests(files) if doc["kind"] == kind}


def three_pools(tmp_path: Path):
    path = tmp_path / "three.yml"
    path.write_text(THREE_POOLS)
    return load_settings(path), THREE_POOLS


# --------------------------------------------------------------------------- every manifest validates


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_shipped_manifests_validate(version):
    files = k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE)
    kinds = sorted(doc["kind"] for doc in manifests(files))
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "ScaledObject",
        "ScaledObject",
        "Secret",
        "TriggerAuthentication",
    ]
    for doc in manifests(files):
        validate(doc, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_three_pool_manifests_validate(tmp_path, version):
    settings, text = three_pools(tmp_path)
    files = k8s.render(settings, text, IMAGE)
    assert list(of_kind(files, "Deployment")) == list(of_kind(files, "ScaledObject")) == list(settings.pools)
    for doc in manifests(files):
        validate(doc, version)


def test_files_and_kustomization():
    files = k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE)
    assert list(files) == [
        "configmap.yaml",
        "triggerauthentication.yaml",
        "pool-worker-a.yaml",
        "pool-worker-b.yaml",
        "kustomization.yaml",
        "broker-secret.template.yaml",
    ]
    (kustomization,) = files[k8s.KUSTOMIZATION]
    assert kustomization["kind"] == "Kustomization"
    # everything but the Secret template: `kubectl apply -k` must never overwrite the real Secret with it
    assert kustomization["resources"] == [name for name in files if name not in (k8s.KUSTOMIZATION, k8s.SECRET_FILE)]
    assert [d["kind"] for d in files["pool-worker-a.yaml"]] == ["Deployment", "ScaledObject"]


# --------------------------------------------------------------------------- the validators catch mistakes


def _set(path: str, value):
    def mutate(doc):
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return mutate


BROKEN = [
    ("Deployment", _set("spec/template/spec/terminationGracePeriod", 60), "Additional properties"),  # misspelt
    ("Deployment", _set("spec/replicas", "two"), "is not of type"),
    ("Deployment", _set("spec/template/spec/containers/0/name", KeyError), "'name' is a required property"),
    ("Deployment", _set("spec/template/spec/containers/0/resources/requests", ["100m"]), "is not of type"),
    ("ScaledObject", _set("spec/maxReplicas", 10), "Additional properties"),  # misspelt maxReplicaCount
    ("ScaledObject", _set("spec/triggers/0/metadata/value", 20), "20 is not of type 'string'"),
    ("ScaledObject", _set("spec/minReplicaCount", "1"), "is not of type 'integer'"),
    ("ScaledObject", _set("spec/triggers", KeyError), "'triggers' is a required property"),
    ("ScaledObject", _set("spec/triggers/0/authenticationRef/kind", "SecretRef"), "is not one of"),
    ("TriggerAuthentication", _set("spec/secretTargetRef/0/key", KeyError), "'key' is a required property"),
    ("TriggerAuthentication", _set("spec/secretTargetRefs", []), "Additional properties"),
    ("Secret", _set("stringdata", {"url": "x"}), "Additional properties"),
    ("ConfigMap", _set("data/test-config.yml", 1), "is not of type"),
]


@pytest.mark.parametrize(("kind", "mutate", "message"), BROKEN, ids=[f"{k}-{m}" for k, _, m in BROKEN])
def test_a_broken_manifest_fails_validation(kind, mutate, message):
    doc = copy.deepcopy(next(iter(of_kind(k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE), kind).values())))
    validate(doc)  # valid as rendered
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        validate(doc)


def test_vendored_keda_schemas_are_the_crds_of_their_kinds():
    for kind in ("ScaledObject", "TriggerAuthentication"):
        schema = json.loads((SCHEMAS / f"keda.sh_{kind.lower()}s.v1alpha1.json").read_text())
        assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    readme = (SCHEMAS / "README.md").read_text()
    assert "Apache License, Version 2.0" in readme and "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a" in readme


# --------------------------------------------------------------------------- what the Deployments run


def test_deployments_run_the_engines_one_worker_command_line(tmp_path):
    settings, text = three_pools(tmp_path)
    deployments = of_kind(k8s.render(settings, text, IMAGE), "Deployment")
    for name, pool in settings.pools.items():
        spec = deployments[name]["spec"]
        assert spec["replicas"] == pool.replicas
        labels = {"app.kubernetes.io/name": "dts", "dts/pool": name}
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"] == labels
        assert deployments[name]["metadata"]["labels"] == labels
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == launch_argv(name)
        assert container["image"] == IMAGE
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env == {
            "DTS_POOL": name,
            "DTS_CONFIG": CONFIG_IN_IMAGE,
            "LOG_FORMAT": "json",
            "BROKER_URL": {"secretKeyRef": {"name": k8s.SECRET, "key": k8s.SECRET_KEY}},
        }
        # terminationGracePeriodSeconds is an integer: engine.stop_timeout 1.5 s -> 2 s, never less
        assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == math.ceil(1.5) == 2
    assert "queue_c" not in str(deployments)  # queues reach the worker through the config, not the manifest


def test_grace_period_is_the_stop_timeout():
    for deployment in of_kind(k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE), "Deployment").values():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert SHIPPED.engine.stop_timeout == 60


def test_config_map_holds_the_config_file_mounted_where_the_image_reads_it():
    files = k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE)
    (config_map,) = of_kind(files, "ConfigMap").values()
    assert config_map["data"] == {"test-config.yml": SHIPPED_TEXT}
    # the written YAML gives back the file byte for byte
    (reread,) = yaml.safe_load_all(k8s.dump(files["configmap.yaml"], "test-config.yml"))
    assert reread["data"]["test-config.yml"] == SHIPPED_TEXT
    assert f"DTS_CONFIG={CONFIG_IN_IMAGE}" in " ".join(dockerfile_instruction("ENV")).split()
    for deployment in of_kind(files, "Deployment").values():
        pod = deployment["spec"]["template"]
        mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mount = mounts[CONFIG_IN_IMAGE]
        assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
        assert mount["subPath"] in config_map["data"] and mount["readOnly"] is True
        # a changed config file changes the pod template, so the pods roll
        assert pod["metadata"]["annotations"][k8s.CONFIG_HASH_ANNOTATION] != ""
    changed = k8s.render(SHIPPED, SHIPPED_TEXT + "\n# changed\n", IMAGE)
    before = of_kind(files, "Deployment")["worker-a"]["spec"]["template"]["metadata"]["annotations"]
    after = of_kind(changed, "Deployment")["worker-a"]["spec"]["template"]["metadata"]["annotations"]
    assert before != after


def test_probes_are_the_images_health_check():
    (check,) = dockerfile_instruction("HEALTHCHECK")
    options, cmd = check.split(" CMD ", 1)
    interval = int(re.search(r"--interval=(\d+)s", options).group(1))
    timeout = int(re.search(r"--timeout=(\d+)s", options).group(1))
    for deployment in of_kind(k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE), "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert probe["exec"]["command"] == yaml.safe_load(cmd) == ["python", "-m", "dts", "worker", "--ping"]
            assert probe["periodSeconds"] == interval and probe["timeoutSeconds"] == timeout
            assert probe["timeoutSeconds"] < probe["periodSeconds"]


def test_security_context_matches_the_image_and_compose():
    (uid, gid) = map(int, dockerfile_instruction("USER")[0].split(":"))
    template = worker_template()
    assert template["read_only"] is True and template["tmpfs"] == ["/tmp"]
    for deployment in of_kind(k8s.render(SHIPPED, SHIPPED_TEXT, IMAGE), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert next(v for v in pod["volumes"] if v["name"] == tmp["name"])["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize(
    ("concurrency", "requests", "limits"),
    [
        (1, {"cpu": "100m", "memory": "96Mi"}, {"cpu": "1000m", "memory": "320Mi"}),
        (4, {"cpu": "400m", "memory": "192Mi"}, {"cpu": "4000m", "memory": "512Mi"}),
    ],
)
def test_resources_grow_with_the_pools_slots(tmp_path, concurrency, requests, limits):
    settings, text = three_pools(tmp_path)
    pool = next(p for p in settings.pools.values() if p.concurrency == concurrency)
    assert k8s.resources(pool) == {"requests": requests, "limits": limits}
    (container,) = of_kind(k8s.render(settings, text, IMAGE), "Deployment")[pool.name]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["resources"] == k8s.resources(pool)


# --------------------------------------------------------------------------- KEDA


def test_each_queue_of_each_pool_has_its_rabbitmq_trigger(tmp_path):
    settings, text = three_pools(tmp_path)
    files = k8s.render(settings, text, IMAGE)
    scaled = of_kind(files, "ScaledObject")
    (auth,) = of_kind(files, "TriggerAuthentication").values()
    for name, pool in settings.pools.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"] == {"name": name}  # the pool's Deployment
        assert [t["metadata"]["queueName"] for t in spec["triggers"]] == list(pool.queues)
        for trigger in spec["triggers"]:
            assert trigger["type"] == "rabbitmq"
            assert trigger["metadata"] == {
                "protocol": "amqp",
                "queueName": trigger["metadata"]["queueName"],
                "mode": "QueueLength",
                "value": str(k8s.scaling_bounds(settings, pool).target),
            }
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert [t["metadata"]["queueName"] for t in scaled["reports-2"]["spec"]["triggers"]] == ["queue_c", "queue_d"]
    # the scaler reads the broker URL from the same Secret (and key) as the workers
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": k8s.SECRET, "key": k8s.SECRET_KEY}]


def test_scaling_bounds(tmp_path):
    settings, text = three_pools(tmp_path)
    bounds = {name: k8s.scaling_bounds(settings, pool) for name, pool in settings.pools.items()}
    assert bounds == {
        "worker-a": k8s.ScalingBounds(2, 7, 20),
        "worker-b": k8s.ScalingBounds(0, 5, 8),  # its autoscale range: the one scale.py auto keeps to
        "reports-2": k8s.ScalingBounds(1, 7, 20),  # replicas 0: KEDA keeps one consumer on the queues
    }
    scaled = of_kind(k8s.render(settings, text, IMAGE), "ScaledObject")
    for name, bound in bounds.items():
        spec = scaled[name]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (bound.min_replicas, bound.max_replicas)
        assert {t["metadata"]["value"] for t in spec["triggers"]} == {str(bound.target)}


# --------------------------------------------------------------------------- secrets, image, names


def test_no_broker_credentials_in_any_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("BROKER_URL", "amqp://dts:s3cr3t-pw@rabbit.example.com:5672/dts")
    path = tmp_path / "c.yml"
    path.write_text(THREE_POOLS)
    settings = load_settings(path)
    assert "s3cr3t-pw" in settings.broker.url  # the environment reached the settings...
    files = k8s.render(settings, THREE_POOLS, IMAGE)
    text = "".join(k8s.dump(docs, "c.yml") for docs in files.values())
    assert "s3cr3t-pw" not in text and "rabbit.example.com" not in text  # ...but not the manifests
    (secret,) = of_kind(files, "Secret").values()
    assert secret["stringData"] == {k8s.SECRET_KEY: "amqp://USER:PASSWORD@BROKER_HOST:5672/VHOST"}
    assert "TEMPLATE" in k8s.dump(files[k8s.SECRET_FILE], "c.yml")


def test_the_default_image_is_the_projects_own(tmp_path):
    from dts.engines.image import worker_image

    tag = worker_image(tmp_path / "lab", {})
    assert tag.startswith("dts-") and "-worker:" in tag and not tag.endswith(":latest")
    assert tag != worker_image(tmp_path / "other", {})  # per project
    assert worker_image(tmp_path / "lab", {"DTS_IMAGE": "dts-worker:e2e"}) == "dts-worker:e2e"


@pytest.mark.parametrize(
    "image", ["dts-worker:latest", "dts-worker", IMAGE, "ghcr.io/org/dts-worker@sha256:" + "a" * 64]
)
def test_good_image_references(image):
    assert k8s.check_image(image) == image


@pytest.mark.parametrize("image", ["", "Dts-Worker:1", "dts worker", "dts-worker:", "-x:1", "a:" + "1" * 129])
def test_bad_image_references_exit_2(image):
    with pytest.raises(CliError, match="is not an image reference") as err:
        k8s.check_image(image)
    assert err.value.exit_code == ExitCode.USAGE


def test_a_pool_name_kubernetes_refuses_exits_2(tmp_path):
    path = tmp_path / "dash.yml"
    path.write_text("pools:\n  worker-a: {queues: [queue_a]}\n  worker-: {queues: [queue_b]}\n")
    with pytest.raises(CliError, match=r"pool 'worker-' cannot name a Kubernetes Deployment.*rename it in dash.yml"):
        k8s.render(load_settings(path), path.read_text(), IMAGE)


# --------------------------------------------------------------------------- scale.py k8s


def read_dir(out: Path) -> dict[str, list[dict]]:
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(out.glob("*.yaml"))}


def test_scale_k8s_writes_what_render_returns(tmp_path, capsys):
    out = tmp_path / "k8s"
    config = tmp_path / "three.yml"
    config.write_text(THREE_POOLS)
    assert scale.main(["k8s", "--config", str(config), "--output", str(out), "--image", IMAGE]) == 0
    stdout = capsys.readouterr().out
    expected = k8s.render(load_settings(config), THREE_POOLS, IMAGE)
    assert read_dir(out) == {name: expected[name] for name in sorted(expected)}
    assert f"kubectl apply -k {out}" in stdout and "kubectl create secret generic dts-broker" in stdout
    for doc in manifests(read_dir(out)):
        validate(doc)

    # a pool removed from the config: its file goes; a file this command did not write stays
    (out / "extra.yaml").write_text("kind: Namespace\n")
    config.write_text(
        THREE_POOLS.replace(
            "  reports-2: {queues: [queue_c, queue_d], replicas: 0, concurrency: 4, execution_pool: threads}\n", ""
        )
    )
    assert scale.main(["k8s", "--config", str(config), "--output", str(out)]) == 0
    left = sorted(p.name for p in out.glob("*.yaml"))
    assert left == sorted(name for name in [*expected, "extra.yaml"] if name != "pool-reports-2.yaml")
    (container,) = of_kind(read_dir(out), "Deployment")["worker-a"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == worker_image(config.parent)  # no --image: the project's own tag


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--image", "Bad Image"], "scale.py: error: --image 'Bad Image' is not an image reference"),
        (["--config", "/nonexistent.yml"], "/nonexistent.yml: cannot read config"),
        (["--engine", "local"], "scale.py: error: unrecognized arguments: --engine local"),
    ],
)
def test_scale_k8s_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, line):
    out = tmp_path / "k8s"
    try:
        code = scale.main(["k8s", "--output", str(out), *argv])
    except SystemExit as exc:  # argparse refuses
        code = exc.code
    assert code == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and line in captured.err and captured.out == ""
    assert not out.exists()


def test_scale_k8s_output_that_is_a_file_exits_2(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert scale.main(["k8s", "--output", str(out)]) == ExitCode.USAGE
    assert "cannot write the manifests" in capsys.readouterr().err


def test_scale_k8s_as_a_subprocess_imports_no_celery(tmp_path):
    code = textwrap.dedent(f"""\
        import sys, scale
        rc = scale.main(["k8s", "--output", {str(tmp_path)!r}])
        print("celery imported:", "celery" in sys.modules)
        sys.exit(rc)
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "celery imported: False" in proc.stdout
    assert (tmp_path / "kustomization.yaml").is_file()


# --------------------------------------------------------------------------- TLS to the broker


def test_broker_tls_reaches_the_workers_and_the_scaler_from_a_secret(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("PEM\n")
    text = (
        THREE_POOLS + "broker: {url: 'amqps://u:p@rabbit.example.org:5671/v', tls: {ca_file: ca.pem, "
        "cert_file: client.pem, key_file: client.key, server_hostname: rabbit.example.org}}\n"
    )
    path = tmp_path / "tls.yml"
    path.write_text(text)
    files = k8s.render(load_settings(path), text, IMAGE)
    for doc in manifests(files):
        validate(doc, "1.37")
    paths = {
        "BROKER_TLS_CA_FILE": f"{k8s.TLS_DIR}/ca.pem",
        "BROKER_TLS_CERT_FILE": f"{k8s.TLS_DIR}/cert.pem",
        "BROKER_TLS_KEY_FILE": f"{k8s.TLS_DIR}/key.pem",
    }
    for deployment in of_kind(files, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in paths} == paths  # dts.config reads the mounted files through these
        assert {"name": "broker-tls", "mountPath": k8s.TLS_DIR, "readOnly": True} in container["volumeMounts"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "broker-tls"]
        assert volume["secret"]["secretName"] == k8s.TLS_SECRET and volume["secret"]["defaultMode"] == 0o440
        assert pod["securityContext"]["fsGroup"] == k8s.UID  # group-readable by the worker, not world-readable
    (auth,) = of_kind(files, "TriggerAuthentication").values()
    params = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert params == {
        "host": (k8s.SECRET, k8s.SECRET_KEY),
        "tls": (k8s.TLS_SECRET, "tls"),
        "ca": (k8s.TLS_SECRET, "ca.pem"),
        "cert": (k8s.TLS_SECRET, "cert.pem"),
        "key": (k8s.TLS_SECRET, "key.pem"),
    }
    template = files[k8s.TLS_SECRET_FILE][0]
    assert set(template["stringData"]) == {"tls", "ca.pem", "cert.pem", "key.pem"}
    assert k8s.TLS_SECRET_FILE not in files[k8s.KUSTOMIZATION][0]["resources"]  # never applied over the real one
    text = "".join(k8s.dump(docs, "tls.yml") for docs in files.values())
    assert "PEM" not in text.replace("ca.pem", "").replace("cert.pem", "").replace("key.pem", "")


def test_without_tls_no_tls_secret_is_mounted_or_asked_for(tmp_path):
    settings, text = three_pools(tmp_path)
    files = k8s.render(settings, text, IMAGE)
    assert k8s.TLS_SECRET_FILE not in files
    assert k8s.TLS_SECRET not in "".join(k8s.dump(docs, "x") for docs in files.values())


def test_a_pools_volumes_are_host_paths_and_its_devices_a_warning(tmp_path, caplog):
    path = tmp_path / "hw.yml"
    path.write_text(
        "pools:\n  bench: {queues: [queue_a], devices: [/dev/ttyUSB0], volumes: [images:/images:ro, /srv/o:/o]}\n"
        "  b: {queues: [queue_b]}\n"
    )
    settings = load_settings(path)
    files = k8s.render(settings, path.read_text(), IMAGE)
    for doc in manifests(files):
        validate(doc)
    pod = of_kind(files, "Deployment")["bench"]["spec"]["template"]["spec"]
    assert pod["volumes"][-2:] == [
        {"name": "host-1", "hostPath": {"path": str(tmp_path / "images")}},
        {"name": "host-2", "hostPath": {"path": "/srv/o"}},
    ]
    assert pod["containers"][0]["volumeMounts"][-2:] == [
        {"name": "host-1", "mountPath": "/images", "readOnly": True},
        {"name": "host-2", "mountPath": "/o", "readOnly": False},
    ]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert "privileged" not in str(pod) and "ttyUSB0" not in str(pod["containers"])  # no device pretends to work
    plain = of_kind(files, "Deployment")["b"]["spec"]["template"]["spec"]
    assert [v["name"] for v in plain["volumes"]] == ["config", "tmp"]
    assert scale.main(["k8s", "--config", str(path), "--output", str(tmp_path / "out")]) == 0
    assert (
        "pools.bench.devices are not in the manifests: Kubernetes gives a pod a device through a device plugin's "
        "resource limit (or a privileged container); see docs/deploy/kubernetes.md"
    ) in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
