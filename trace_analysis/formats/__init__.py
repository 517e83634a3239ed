"""Trace file and API formats, decoded into one span type (:class:`formats.jaeger.Span`):
Jaeger JSON (``jaeger``), OTLP JSON (``otlp``) and Zipkin v2 JSON (``zipkin``); whether a
span failed is read the same way in all of them (``status``)."""
