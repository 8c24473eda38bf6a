#!/bin/sh
# Build the project's worker image (`dts build`; dts.engines.image): on $BASE_IMAGE, else python:3.12-slim,
# else (no registry reachable) a local Debian base made with docker/base_image.sh (cached). The tag names
# the project, the package version and a hash of the build context ($DTS_IMAGE overrides it).
set -eu
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" scale.py build --engine compose
