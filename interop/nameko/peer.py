"""Nameko peer service used by Basidia's interop tests.

Run with:  nameko run --config config.yaml peer   (from this directory)
"""
from nameko.events import EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc

# (payload, auth_token) of every "rust_source"/"ping" event received.
RECEIVED = []


class PeerError(Exception):
    """Custom exception raised by `fail` (exc_path "peer.PeerError")."""


class WorkerContext(DependencyProvider):
    """Injects the current worker context (to read context data)."""

    def get_dependency(self, worker_ctx):
        return worker_ctx


def _plain(value):
    # Header values may arrive as bytes when a peer sends AMQP byte arrays;
    # keep the result JSON/msgpack friendly and make that visible.
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).decode("utf-8", "replace")}
    return value


class NamekoPeer:
    name = "nameko_peer"

    ctx = WorkerContext()
    rust = RpcProxy("rust_greeter")
    dispatch = EventDispatcher()

    @rpc
    def hello(self, name):
        return "Hello, {}!".format(name)

    @rpc
    def whoami(self):
        return {
            "auth_token": _plain(self.ctx.data.get("auth_token")),
            "call_id_stack": self.ctx.call_id_stack,
        }

    @rpc
    def context(self):
        """All context data as received (header names without "nameko.")."""
        data = {k: _plain(v) for k, v in self.ctx.data.items()}
        data["call_id_stack"] = self.ctx.call_id_stack
        return data

    @rpc
    def call_rust(self, name):
        return self.rust.hello(name)

    @rpc
    def call_rust_whoami(self):
        return self.rust.whoami()

    @event_handler("rust_source", "ping")
    def on_ping(self, payload):
        RECEIVED.append([payload, _plain(self.ctx.data.get("auth_token"))])

    @rpc
    def received(self):
        return list(RECEIVED)

    @rpc
    def emit(self, payload):
        self.dispatch("pong", payload)
        return None

    @rpc
    def fail(self):
        raise PeerError("broken on purpose")
