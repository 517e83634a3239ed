"""Where traces come from: Jaeger's HTTP query API (``jaeger_api``) and saved files
(``files``), each read one trace at a time."""
