"""Events between services: the transactional outbox and its relay, the consumer-group worker (handlers,
batch apply, settling, dead letters), replica rebuilds, retention, and read-only views of the streams
shared by the gateway's admin API and `swarm streams`. No HTTP, no service's business."""
