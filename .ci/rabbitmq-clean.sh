#!/usr/bin/env bash
# Deletes the queues and exchanges that test runs leave on the local RabbitMQ (names made by the
# conformance suite and the tests carry the prefixes below), so runs do not pile them up.
set -u
command -v rabbitmqctl >/dev/null || exit 0
rabbitmqctl -q list_queues name 2>/dev/null | grep -E '^(evt-conf_|rpc-conf_|evt-t_|rpc-t_)' |
  while read -r q; do rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true; done
rabbitmqctl -q list_exchanges name 2>/dev/null | grep -E '^(conf_|t_).*\.events$' |
  while read -r x; do
    rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$x\">>), false, <<\"cleanup\">>)." </dev/null >/dev/null 2>&1 || true
  done
# Dead letters the tests produced on purpose.
rabbitmqctl -q purge_queue basidia.dead-letters </dev/null >/dev/null 2>&1 || true
exit 0
