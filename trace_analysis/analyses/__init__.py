"""What is computed from the traces: flags and findings (``analyzer``), the critical path and
culprit (``critical_path``), one trace explained (``explain``), the summary (``summary``) and
the comparison with a baseline (``compare``)."""
