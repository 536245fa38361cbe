"""Deletes the JetStream streams and consumers that test runs leave on the local nats-server
(test sources are named with the prefixes below), so runs do not pile them up.

Usage: python nats-clean.py [NATS_URL]
"""
import asyncio
import sys

import nats

PREFIXES = ("BASIDIA_EVENTS_conf_", "BASIDIA_EVENTS_t_", "BASIDIA_EVENTS_bench_")


async def main(url):
    nc = await nats.connect(url, connect_timeout=5)
    js = nc.jetstream()
    removed = 0
    for info in await js.streams_info():
        name = info.config.name
        if name.startswith(PREFIXES):
            await js.delete_stream(name)
            removed += 1
    # Dead letters the tests produced on purpose.
    try:
        await js.purge_stream("BASIDIA_DEAD_LETTERS")
    except Exception:  # the stream may not exist yet
        pass
    await nc.close()
    print(f"nats-clean: removed {removed} test streams")


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
