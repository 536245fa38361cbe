//! The fault suite lives in this package's tests: `tests/faults/` (hostile peers, operator
//! actions, signals in the middle of work) and the broker restart tests, which stop and start
//! the machine's shared brokers and so run in binaries of their own.
