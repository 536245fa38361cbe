"""A foreign OTLP/HTTP receiver for the trace tests: listens on 127.0.0.1 (a free port, printed
first as `listening PORT`), decodes every POST to /v1/traces and /v1/metrics with the
OpenTelemetry project's own protobuf classes (opentelemetry-proto), and prints each span it
receives as one JSON line (ids in hex, name, kind, the resource's service.name, attributes,
status and events), and each metric data point as one JSON line with a "metric" key.

Usage: otlp_receiver.py   (runs until killed)
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KINDS = {v: k for k, v in Span.SpanKind.items()}

# Requests are handled on threads of their own: one line at a time on standard output.
PRINTING = threading.Lock()


def emit(line):
    with PRINTING:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
CODES = {v: k for k, v in Status.StatusCode.items()}


def value(any_value):
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def attributes(pairs):
    return {kv.key: value(kv.value) for kv in pairs}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(415)
            self.end_headers()
            return
        if self.path == "/v1/metrics":
            self.metrics(body)
            return
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": KINDS.get(span.kind, str(span.kind)),
                        "service": resource.get("service.name"),
                        "pid": resource.get("process.pid"),
                        "attributes": attributes(span.attributes),
                        "status": CODES.get(span.status.code, str(span.status.code)),
                        "events": [event.name for event in span.events],
                        "header": self.headers.get("x-test-key"),
                    }
                    emit(line)
        self.answer(ExportTraceServiceResponse())

    def metrics(self, body):
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for point in data.data_points:
                        line = {
                            "metric": metric.name,
                            "type": kind,
                            "service": resource.get("service.name"),
                            "attributes": attributes(point.attributes),
                            "header": self.headers.get("x-test-key"),
                        }
                        if kind == "histogram":
                            line["count"] = point.count
                            line["buckets"] = list(point.bucket_counts)
                            line["bounds"] = list(point.explicit_bounds)
                        else:
                            line["value"] = point.as_double
                        if kind == "sum":
                            line["monotonic"] = data.is_monotonic
                        emit(line)
        self.answer(ExportMetricsServiceResponse())

    def answer(self, response):
        body = response.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        sys.stderr.write("receiver: " + (format % args) + "\n")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
