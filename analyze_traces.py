#!/usr/bin/env python3
"""Find slow and failing traces in Jaeger and say why: ``./analyze_traces.py 200``.

A thin entry point; the analyzer is the ``trace_analysis`` package (see docs/analyzer.md).
"""

import sys

try:
    from trace_analysis.cli import main
except ImportError as exc:  # run with an interpreter that lacks the project's dependencies
    sys.exit(
        f"analyze_traces.py: error: {exc}; run it with the project's environment "
        "(`uv run analyze_traces.py ...` or `.venv/bin/python analyze_traces.py ...`)"
    )

if __name__ == "__main__":
    sys.exit(main())
