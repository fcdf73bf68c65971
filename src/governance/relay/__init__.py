"""The outbox relay: the event log, published to Kafka as CloudEvents (docs/events.md)."""
