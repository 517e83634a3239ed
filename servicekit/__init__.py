"""Shared plumbing for the order-stack services.

Everything the four services have in common lives here exactly once: telemetry setup,
JSON logging with trace ids, the instrumented downstream HTTP client, problem+json errors,
health endpoints, SQLite access and the app factory. Services hold only their domain.
"""
