"""A traced Python caller: inside an OpenTelemetry span, with opentelemetry-instrumentation-pika
injecting the trace context into what it publishes, calls t_traced.trace_id over RabbitMQ as a
Nameko-style client would. Prints {"trace_id": the span's, "reply": the service's answer}.

Usage: traced_caller.py AMQP_URL
"""

import json
import sys
import uuid

import pika
from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.sdk.trace import TracerProvider


def main():
    trace.set_tracer_provider(TracerProvider())
    PikaInstrumentor().instrument()
    tracer = trace.get_tracer("basidia-interop")

    connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
    channel = connection.channel()
    reply_key = str(uuid.uuid4())
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange="nameko-rpc", routing_key=reply_key)
    correlation_id = str(uuid.uuid4())
    with tracer.start_as_current_span("python caller") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        channel.basic_publish(
            exchange="nameko-rpc",
            routing_key="t_traced.trace_id",
            body=json.dumps({"args": [], "kwargs": {}}).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                reply_to=reply_key,
                correlation_id=correlation_id,
            ),
            mandatory=True,
        )
    reply = None
    for method, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=10):
        if method is None:
            break
        if props.correlation_id == correlation_id:
            reply = json.loads(body)
            break
    channel.cancel()
    connection.close()
    print(json.dumps({"trace_id": trace_id, "reply": reply}))


if __name__ == "__main__":
    main()
