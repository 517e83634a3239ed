"""The reports: terminal table (``table``), JSON (``json_report``), Markdown (``markdown``),
HTML (``html_report``), one trace's waterfall (``trace_view``), the comparison with a
baseline (``comparison``, ``comparison_table``, ``comparison_html``); ``wording`` holds the
phrases they share."""
