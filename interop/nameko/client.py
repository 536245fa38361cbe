"""Calls a Nameko-compatible RPC method through nameko's ClusterRpcProxy.

usage: python client.py [--msgpack] SERVICE METHOD JSON_ARGS
                        [--auth-token T] [--timeout SECONDS]

JSON_ARGS is a JSON array of positional arguments (e.g. '["Ana"]'), or a JSON
object {"args": [...], "kwargs": {...}}.

stdout and exit status:
  0  the JSON-encoded result
  3  the call raised remotely: {"exc_type": ..., "value": ...}
     (a RemoteError, or a nameko exception it re-raises as itself, such as
     MethodNotFound or IncorrectSignature: then "exc_path" is given too)
  4  no reply within the timeout (default 10 s): {"error": "timeout"}
  5  no queue is bound for SERVICE (UnknownService): {"error": "unknown service"}
  2  bad command line
"""
import argparse
import json
import sys

from nameko.exceptions import (
    RemoteError, RpcTimeout, UnknownService, get_module_path, registry,
)
from nameko.standalone.rpc import ClusterRpcProxy

import _config


def parse_call_args(text):
    value = json.loads(text)
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        return list(value.get("args", [])), dict(value.get("kwargs", {}))
    raise SystemExit('JSON_ARGS must be a JSON array or {"args": [], "kwargs": {}}')


def emit(obj, code):
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msgpack", action="store_true",
                        help="serialize the request with msgpack")
    parser.add_argument("--auth-token", default=None,
                        help="context data auth_token (header nameko.auth_token)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("service")
    parser.add_argument("method")
    parser.add_argument("json_args", nargs="?", default="[]")
    opts = parser.parse_args(argv)

    args, kwargs = parse_call_args(opts.json_args)
    config = _config.load(msgpack=opts.msgpack)
    context_data = {}
    if opts.auth_token is not None:
        context_data["auth_token"] = opts.auth_token

    with ClusterRpcProxy(config, context_data=context_data,
                         timeout=opts.timeout) as proxy:
        method = getattr(proxy[opts.service], opts.method)
        try:
            result = method(*args, **kwargs)
        except RemoteError as exc:
            return emit({"exc_type": exc.exc_type, "value": exc.value}, 3)
        except RpcTimeout:
            return emit({"error": "timeout"}, 4)
        except UnknownService:
            return emit({"error": "unknown service"}, 5)
        except Exception as exc:
            path = get_module_path(type(exc))
            if path not in registry:
                raise
            # nameko re-raises registered exceptions (MethodNotFound, ...)
            # as themselves rather than as RemoteError
            return emit({"exc_type": type(exc).__name__, "exc_path": path,
                         "value": str(exc)}, 3)
    return emit(result, 0)


if __name__ == "__main__":
    sys.exit(main())
