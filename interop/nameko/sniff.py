"""Prints every message routed to the given exchanges, with exact AMQP types.

usage: python sniff.py [--count N] [--seconds S] EXCHANGE[:BINDING_KEY] ...

Declares a server-named, exclusive, auto-delete queue, binds it to each
EXCHANGE (a topic exchange, declared durable like Nameko does, if missing)
with BINDING_KEY (default "#"), and prints one JSON object per message:
delivery info, every basic property that is present, header values tagged
with their AMQP field-table type letter ("S" long string, "x" byte array,
"A" array, "I" 32-bit int, "F" table, ...), and the body as hex, text and
decoded (json or msgpack). Stops after N messages or S seconds.
"""
import argparse
import binascii
import json
import sys
import time

import amqp
import amqp.serialization as ser

_orig_read_item = ser._read_item


def _tagged_read_item(buf, offset):
    tag = chr(buf[offset])
    value, offset = _orig_read_item(buf, offset)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = {"bytes_hex": bytes(value).hex()}
    return {"amqp_type": tag, "value": value}, offset


def decode_body(content_type, body):
    try:
        if content_type == "application/json":
            return json.loads(body.decode("utf-8"))
        if content_type == "application/x-msgpack":
            import msgpack
            return msgpack.unpackb(body, raw=False)
    except Exception as exc:  # pragma: no cover
        return {"undecodable": repr(exc)}
    return None


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="127.0.0.1:5672")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ready-file", default=None,
                        help="touched once the queue is bound")
    parser.add_argument("bindings", nargs="+")
    opts = parser.parse_args(argv)

    conn = amqp.Connection(host=opts.url, userid="guest", password="guest")
    conn.connect()
    ch = amqp.Channel(conn, auto_decode=False)  # keep bodies as raw bytes
    ch.open()
    queue, _, _ = ch.queue_declare("", exclusive=True, auto_delete=True)
    for spec in opts.bindings:
        exchange, _, key = spec.partition(":")
        ch.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        ch.queue_bind(queue, exchange, key or "#")

    seen = []

    def on_message(msg):
        props = dict(msg.properties)
        headers = props.pop("application_headers", None)
        body = msg.body
        if isinstance(body, str):  # pragma: no cover (auto_decode is off)
            body = body.encode("utf-8")
        record = {
            "exchange": msg.delivery_info.get("exchange"),
            "routing_key": msg.delivery_info.get("routing_key"),
            "redelivered": msg.delivery_info.get("redelivered"),
            "properties": props,
            "headers": headers,
            "body_len": len(body),
            "body_hex": binascii.hexlify(body).decode(),
        }
        try:
            record["body_text"] = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        record["body_decoded"] = decode_body(props.get("content_type"), body)
        print(json.dumps(record, default=repr), flush=True)
        seen.append(record)

    # Tag header values from here on (connection setup needs plain tables).
    ser._read_item = _tagged_read_item
    ch.basic_consume(queue, callback=on_message, no_ack=True)
    if opts.ready_file:
        open(opts.ready_file, "w").close()
    deadline = time.time() + opts.seconds
    while time.time() < deadline and not (opts.count and len(seen) >= opts.count):
        try:
            conn.drain_events(timeout=0.5)
        except Exception as exc:  # socket.timeout
            if "timed out" not in str(exc) and type(exc).__name__ != "timeout":
                raise
    ser._read_item = _orig_read_item
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
