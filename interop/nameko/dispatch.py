"""Dispatches a Nameko event with nameko.standalone.events.event_dispatcher.

usage: python dispatch.py [--msgpack] [--declare] SOURCE EVENT_TYPE JSON_PAYLOAD

Publishes JSON_PAYLOAD (decoded) to the topic exchange "SOURCE.events" with
routing key EVENT_TYPE, exactly as Nameko's standalone dispatcher does: no
context headers, delivery_mode 2, publisher confirms. Like Nameko, it does
NOT declare the exchange: publishing to a missing exchange fails (404, exit
1) unless --declare is given, which first declares it with Nameko's flags
(topic, durable, not auto-delete). Exit 0 once the broker has confirmed.
"""
import argparse
import json
import sys

from kombu.common import maybe_declare
from nameko.amqp.publish import get_connection
from nameko.standalone.events import event_dispatcher, get_event_exchange

import _config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msgpack", action="store_true")
    parser.add_argument("--declare", action="store_true",
                        help="declare SOURCE.events first (as a service would)")
    parser.add_argument("source")
    parser.add_argument("event_type")
    parser.add_argument("json_payload")
    opts = parser.parse_args(argv)

    config = _config.load(msgpack=opts.msgpack)
    if opts.declare:
        with get_connection(config["AMQP_URI"]) as conn:
            maybe_declare(get_event_exchange(opts.source, config), conn.channel())
    dispatch = event_dispatcher(config)
    dispatch(opts.source, opts.event_type, json.loads(opts.json_payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
