"""A traced Python caller: inside an OpenTelemetry span, with opentelemetry-instrumentation-pika
writing the trace context into what it publishes, calls SERVICE.METHOD over RabbitMQ as a
Nameko-style client would. Prints one JSON object: the caller's trace id, every span the Python
side made (name, span id, parent span id, in hex) and the reply.

Usage: pika_traced_caller.py AMQP_URL SERVICE METHOD ARGS_JSON
"""

import json
import sys
import uuid

import pika
from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main():
    url, service, method, args = sys.argv[1:5]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    PikaInstrumentor().instrument()
    tracer = trace.get_tracer("basidia-interop")

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    reply_key = str(uuid.uuid4())
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange="nameko-rpc", routing_key=reply_key)
    correlation_id = str(uuid.uuid4())
    with tracer.start_as_current_span("python caller") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        channel.basic_publish(
            exchange="nameko-rpc",
            routing_key=f"{service}.{method}",
            body=json.dumps({"args": json.loads(args), "kwargs": {}}).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                reply_to=reply_key,
                correlation_id=correlation_id,
            ),
            mandatory=True,
        )
    reply = None
    for method_frame, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=10):
        if method_frame is None:
            break
        if props.correlation_id == correlation_id:
            reply = json.loads(body)
            break
    channel.cancel()
    connection.close()
    made = [
        {
            "name": s.name,
            "span_id": format(s.context.span_id, "016x"),
            "parent_span_id": format(s.parent.span_id, "016x") if s.parent else "",
            "trace_id": format(s.context.trace_id, "032x"),
        }
        for s in spans.get_finished_spans()
    ]
    print(json.dumps({"trace_id": trace_id, "spans": made, "reply": reply}))


if __name__ == "__main__":
    main()
