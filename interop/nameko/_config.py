"""Loads config.yaml / config-msgpack.yaml the way `nameko run --config` does."""
import os

import yaml

from nameko.cli.main import setup_yaml_parser

HERE = os.path.dirname(os.path.abspath(__file__))


def load(msgpack=False):
    setup_yaml_parser()
    name = "config-msgpack.yaml" if msgpack else "config.yaml"
    with open(os.path.join(HERE, name)) as f:
        config = yaml.safe_load(f)
    config.pop("LOGGING", None)
    return config
