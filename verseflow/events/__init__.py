"""Events: the transactional outbox, its relay to Redis Streams, consumers and sagas (ARCHITECTURE §6)."""
