"""test-config.yml → one typed, frozen `Settings`, validated at load time; the only config parser.

    settings = load_settings()                      # --config / $DTS_CONFIG / ./test-config.yml (or a parent's)
    settings.pools["worker-a"].queues               # ('queue_a',)
    settings.pool_for_task("task_b").name           # 'worker-b'

Four modules, one concern each: `schema` declares every key once (type, default, bounds, help: the
dataclasses, and `keys()` walks them); `parse` reads a document by that declaration; `yamlfile` reads a
file and its YAML within bounds; `env` holds the paths, .env and the environment's overrides. Every
problem is one ConfigError (exit 2) that leads with the file, the dotted key and the value.
"""

from __future__ import annotations

import os

from dts.config.env import (
    CONFIG_NAME,
    MAX_ENV_FILE_BYTES,
    TLS_ENV,
    TLS_FILE_KEYS,
    broker_url_from_env_file,
    deployment_env,
    env_file,
    find_config,
    project_dir,
    project_name,
    read_broker_url_file,
    read_env_file,
    results_dir,
    run_dir,
)
from dts.config.parse import ROOT_KEYS, broker_urls, parse_settings
from dts.config.schema import (
    BROKER_SCHEMES,
    DEFAULT_ROUTES,
    EXECUTION_POOLS,
    MAX_POOLS,
    MAX_URL_CHARS,
    POOL_NAME,
    QUEUE_NAME,
    QUEUE_TYPES,
    AutoscaleSettings,
    BrokerSettings,
    BrokerTLS,
    DispatchSettings,
    EngineSettings,
    LoadTestSettings,
    MonitoringSettings,
    PoolAutoscale,
    PoolSettings,
    RetryPolicy,
    Settings,
    TaskSettings,
    keys,
)
from dts.config.yamlfile import (
    MAX_CONFIG_BYTES,
    MAX_INT_DIGITS,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    parse_yaml,
    read_bounded,
)

__all__ = [
    "BROKER_SCHEMES",
    "CONFIG_NAME",
    "DEFAULT_ROUTES",
    "EXECUTION_POOLS",
    "MAX_CONFIG_BYTES",
    "MAX_ENV_FILE_BYTES",
    "MAX_INT_DIGITS",
    "MAX_POOLS",
    "MAX_URL_CHARS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "POOL_NAME",
    "QUEUE_NAME",
    "QUEUE_TYPES",
    "ROOT_KEYS",
    "TLS_ENV",
    "TLS_FILE_KEYS",
    "AutoscaleSettings",
    "BrokerSettings",
    "BrokerTLS",
    "DispatchSettings",
    "EngineSettings",
    "LoadTestSettings",
    "MonitoringSettings",
    "PoolAutoscale",
    "PoolSettings",
    "RetryPolicy",
    "Settings",
    "TaskSettings",
    "broker_url_from_env_file",
    "broker_urls",
    "deployment_env",
    "env_file",
    "find_config",
    "keys",
    "load_settings",
    "parse_settings",
    "parse_yaml",
    "project_dir",
    "project_name",
    "read_bounded",
    "read_broker_url_file",
    "read_env_file",
    "results_dir",
    "run_dir",
]


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read, parse and validate the config file; every problem is one ConfigError."""
    resolved = find_config(path)
    text = read_bounded(resolved, MAX_CONFIG_BYTES, "config", "pass --config PATH or set DTS_CONFIG")
    return parse_settings(parse_yaml(text, resolved), resolved, deployment_env(None, env_file(resolved.parent)))
