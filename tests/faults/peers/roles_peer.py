"""A foreign peer for the roles test: sends one request per token to t_guarded.purge, as a
Python client that writes its own context would, and prints each reply as a JSON line.

Usage: roles_peer.py amqp|nats URL < tokens.json   (a JSON list of [label, token])
"""

import asyncio
import json
import sys
import uuid

BODY = json.dumps({"args": [], "kwargs": {}}).encode()


def over_amqp(url, attempts):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    reply_key = str(uuid.uuid4())
    # Exclusive, not auto-delete: it must outlive each consume below, and goes with the connection.
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange="nameko-rpc", routing_key=reply_key)
    for label, token in attempts:
        correlation_id = f"{label}-{uuid.uuid4()}"
        channel.basic_publish(
            exchange="nameko-rpc",
            routing_key="t_guarded.purge",
            body=BODY,
            properties=pika.BasicProperties(
                content_type="application/json",
                reply_to=reply_key,
                correlation_id=correlation_id,
                headers={"nameko.auth_token": token, "nameko.user_id": "mallory"},
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
        print(json.dumps({"label": label, "reply": reply}), flush=True)
    connection.close()


async def over_nats(url, attempts):
    import nats

    client = await nats.connect(url)
    for label, token in attempts:
        context = json.dumps({"auth_token": token, "user_id": "mallory"})
        reply = await client.request(
            "basidia.rpc.t_guarded.purge",
            BODY,
            timeout=10,
            headers={"Content-Type": "application/json", "Basidia-Context": context},
        )
        print(json.dumps({"label": label, "reply": json.loads(reply.data)}), flush=True)
    await client.close()


def main():
    broker, url = sys.argv[1], sys.argv[2]
    attempts = json.load(sys.stdin)
    if broker == "amqp":
        over_amqp(url, attempts)
    else:
        asyncio.run(over_nats(url, attempts))


if __name__ == "__main__":
    main()
