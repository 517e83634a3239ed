"""Find slow and failing traces in Jaeger, and say why (the logic behind analyze_traces.py).

The subpackages follow the data, and each imports only from those before it:

``formats`` (Jaeger, OTLP, Zipkin JSON into one span type) -> ``model`` (the spans of one
trace, its tree and clock skew; what the analysis produces) -> ``sources`` (where traces come
from: Jaeger's query API, saved files) -> ``analyses`` (flags, critical path, explain, summary,
compare) -> ``reports`` (table, JSON, Markdown, HTML, trace view, comparison) -> ``cli``
(and ``browser``, the same reports as a web view of Jaeger's traces).

See docs/analyzer.md. The entry points for other code are
:func:`trace_analysis.analyses.analyzer.analyze_traces` (over decoded traces),
:func:`trace_analysis.sources.files.iter_file_traces` (a saved file: Jaeger, OTLP or Zipkin
JSON) and :func:`trace_analysis.cli.main` (the command line).
"""
