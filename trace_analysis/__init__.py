"""Find slow and failing traces in Jaeger, and say why (the logic behind analyze_traces.py).

See docs/analyzer.md. The entry points for other code are
:func:`trace_analysis.analysis.analyze_traces` (over decoded traces),
:func:`trace_analysis.loading.iter_file_traces` (a saved file: Jaeger, OTLP or Zipkin JSON) and
:func:`trace_analysis.cli.main` (the command line).
"""
