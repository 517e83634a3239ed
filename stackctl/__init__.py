"""Run the whole order stack locally as plain processes: Jaeger, the collector, four services.

``make up`` / ``make down`` / ``make demo`` drive it through ``python -m stackctl``; the end-to-end
tests drive the same :class:`~stackctl.stack.Stack` on free ports in a temporary directory, so
what CI tests is what a user runs.
"""
