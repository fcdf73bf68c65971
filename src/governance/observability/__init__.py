"""Operating the service: Prometheus metrics, JSON logs with request ids, graceful shutdown."""
