"""One pool declaration drives every engine (no Docker, no cluster): a change to a pool in the config changes
the compose services, the swarm stack and the Kubernetes manifests alike."""

from pathlib import Path

import yaml
from helpers import ROOT

from dts import k8s
from dts.config import load_settings
from dts.engines.compose import render_pools
from dts.engines.containers import worker_template
from dts.engines.swarm import render_stack
from dts.naming import launch_argv

SHIPPED = ROOT / "test-config.yml"


def outputs(config: Path) -> dict[str, dict[str, dict]]:
    """pool -> (command, replicas, stop grace seconds, queues it is scaled on) as each engine renders it."""
    settings = load_settings(config)
    compose = render_pools(settings, worker_template())["services"]
    swarm = render_stack(settings, "dts-worker:test", Path("/dev/null"), "secret", "config")["services"]
    files = k8s.render(settings, config.read_text(), "dts-worker:test")
    docs = [doc for docs in files.values() for doc in docs]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    return {
        "compose": {
            pool: {"command": s["command"], "grace": float(s["stop_grace_period"].rstrip("s"))}
            for pool, s in compose.items()
        },
        "swarm": {
            pool: {
                "command": s["command"],
                "grace": float(s["stop_grace_period"].rstrip("s")),
                "replicas": s["deploy"]["replicas"],
            }
            for pool, s in swarm.items()
        },
        "k8s": {
            pool: {
                "command": d["spec"]["template"]["spec"]["containers"][0]["command"],
                "grace": float(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]),
                "replicas": d["spec"]["replicas"],
                "queues": [t["metadata"]["queueName"] for t in scaled[pool]["spec"]["triggers"]],
            }
            for pool, d in deployments.items()
        },
    }


def test_a_pool_change_changes_compose_swarm_and_k8s_alike(tmp_path):
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["pools"]["reports"] = {"queues": ["queue_b"], "replicas": 3}  # a new pool takes over queue_b
    del doc["pools"]["worker-b"]
    doc["engine"]["stop_timeout"] = 45
    changed = tmp_path / "changed.yml"
    changed.write_text(yaml.safe_dump(doc, sort_keys=False))

    before, after = outputs(SHIPPED), outputs(changed)
    for engine in ("compose", "swarm", "k8s"):
        assert set(before[engine]) == {"worker-a", "worker-b"}, engine
        assert set(after[engine]) == {"worker-a", "reports"}, engine  # the pools, nothing hard-coded
        assert after[engine]["reports"]["command"] == launch_argv("reports"), engine  # the one command line
        assert {p["grace"] for p in after[engine].values()} == {45.0}, engine  # engine.stop_timeout everywhere
    for engine in ("swarm", "k8s"):
        assert after[engine]["reports"]["replicas"] == 3, engine
    assert after["k8s"]["reports"]["queues"] == ["queue_b"]


def imported_modules(path: Path) -> set[str]:
    """The dts modules a file imports (at any depth of its body), by their dotted names."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_no_engine_module_imports_another_or_the_factory_or_celery_app():
    from dts import engines

    package = ROOT / "dts" / "engines"
    engine_modules = {dotted.split(":")[0] for dotted in engines.ENGINES.values()}
    helpers = {"dts.engines.base", "dts.engines.containers", "dts.engines.docker", "dts.engines.image"}
    for module in sorted(engine_modules | helpers | {"dts.engines.registry", "dts.engines.supervise"}):
        imports = imported_modules(package / f"{module.rsplit('.', 1)[1]}.py")
        assert not imports & (engine_modules - {module}), module  # no engine module imports another
        assert "dts.engines" not in imports and "celery_app" not in imports, module  # nor the factory, nor the app
    assert "celery_app" not in imported_modules(package / "__init__.py")


def test_the_engine_up_started_is_the_one_used_and_another_is_refused(tmp_path, monkeypatch):
    import pytest
    from helpers import run_cli

    from dts.config import project_dir, run_dir
    from dts.engines import chosen_engine, engine_reason, refuse_a_second_engine, remember_engine
    from dts.errors import CliError

    monkeypatch.delenv("DTS_RUN_DIR", raising=False)
    config = tmp_path / "test-config.yml"
    config.write_text("pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n")
    settings = load_settings(config)
    remember_engine(run_dir(project_dir(settings)), "local")  # what `dts up --engine local` notes
    assert chosen_engine(settings, None) == "local"
    assert engine_reason(settings, None) == "the one `dts up` started the pools on"
    refuse_a_second_engine(settings, "local")
    with pytest.raises(CliError) as refused:
        refuse_a_second_engine(settings, "compose")
    assert refused.value.exit_code == 2 and str(refused.value).startswith(
        "the pools run on the local engine (`dts up` started them there), not compose: run `dts down` first"
    )
    proc = run_cli("scale.py", "set", "worker-a", "2", "--engine", "compose", "--config", str(config))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "the pools run on the local engine" in proc.stderr
    remember_engine(run_dir(project_dir(settings)), None)  # what `dts down` does: nothing runs, any engine goes
    refuse_a_second_engine(settings, "compose")
    assert engine_reason(settings, "swarm") == "asked for on the command line"
