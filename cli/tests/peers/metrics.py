"""A foreign peer for the metrics test: floods a service with requests for random method names
over NATS (nats-py), reading /metrics with prometheus-client's own text parser before and after;
prints one JSON object: the series the flood added, and every sample after it.

Usage: metrics.py NATS_URL METRICS_URL SERVICE COUNT
"""

import asyncio
import json
import sys
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families


async def flood(url, service, count):
    import nats

    client = await nats.connect(url)
    body = json.dumps({"args": [], "kwargs": {}}).encode()
    for _ in range(count):
        method = f"flood_{uuid.uuid4().hex}"
        reply = await client.request(
            f"basidia.rpc.{service}.{method}",
            body,
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(reply.data)
        assert answer["error"]["exc_type"] == "MethodNotFound", answer
    await client.close()


def scrape(metrics_url):
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        kind = response.headers.get("Content-Type", "")
        assert kind.startswith("text/plain; version=0.0.4"), kind
        text = response.read().decode()
    return [
        {"name": s.name, "labels": s.labels, "value": s.value}
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def series(samples):
    return {(s["name"], tuple(sorted(s["labels"].items()))) for s in samples}


def main():
    nats_url, metrics_url, service, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # Twice: the first scrape is itself counted, as a series of the /metrics route.
    scrape(metrics_url)
    before = series(scrape(metrics_url))
    asyncio.run(flood(nats_url, service, count))
    samples = scrape(metrics_url)
    new = sorted(str(s) for s in series(samples) - before)
    print(json.dumps({"new_series": new, "samples": samples}))


if __name__ == "__main__":
    main()
