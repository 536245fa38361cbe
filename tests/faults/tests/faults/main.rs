//! The fault suite: services driven from outside as operators, deploys and hostile peers drive
//! them (a SIGTERM in the middle of work, raw clients sending what they like), on the real
//! brokers. Needs `BASIDIA_TEST_AMQP_URL` and `BASIDIA_TEST_NATS_URL` (both set in CI; outside
//! CI a missing one skips with a message).

mod alarm;
mod amqp_wire;
mod child;
mod cluster;
mod drain;
mod flood;
mod headers;
mod http_drain;
mod http_outage;
mod late_events;
mod nats_peers;
mod operator;
mod poison;
mod rabbit_nodes;
mod roles;
mod traced;
