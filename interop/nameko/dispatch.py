"""Dispatches a Nameko event with nameko.standalone.events.event_dispatcher.

usage: python dispatch.py [--msgpack] SOURCE EVENT_TYPE JSON_PAYLOAD

Publishes JSON_PAYLOAD (decoded) to the topic exchange "SOURCE.events" with
routing key EVENT_TYPE (declaring the exchange if needed). Exit 0 once the
broker has confirmed the publish.
"""
import argparse
import json
import sys

from nameko.standalone.events import event_dispatcher

import _config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msgpack", action="store_true")
    parser.add_argument("source")
    parser.add_argument("event_type")
    parser.add_argument("json_payload")
    opts = parser.parse_args(argv)

    config = _config.load(msgpack=opts.msgpack)
    dispatch = event_dispatcher(config)
    dispatch(opts.source, opts.event_type, json.loads(opts.json_payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
