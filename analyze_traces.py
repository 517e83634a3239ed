#!/usr/bin/env python3
"""Find slow and failing traces in Jaeger and say why: ``./analyze_traces.py 200``.

A thin entry point; the analyzer is the ``trace_analysis`` package (see docs/analyzer.md).
"""

import sys

try:
    from trace_analysis.cli import main
except ImportError as exc:  # run with an interpreter that lacks the project's dependencies
    print(
        f"analyze_traces.py: error: {exc}; run it with the project's environment "
        "(`.venv/bin/python analyze_traces.py ...` after `make install`)",
        file=sys.stderr,
    )
    sys.exit(2)  # 1 means "flagged" (--fail-on); every error is 2

if __name__ == "__main__":
    sys.exit(main())
