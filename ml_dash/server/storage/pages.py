"""The bounds of the reads that page a run's streams: every storage backend honours them, the handlers
check requests against them (sqlite/streams.py says how SQLite keeps each a key range)."""

#: Streams per page of the run document and of ``.../streams`` (its ``limit`` at most).
STREAM_PAGE = 1_000
#: Streams ``.../streams?q=`` examines per request: a filter that matches few names ends its page there,
#: with ``next``, instead of reading every stream of the run in one request.
FILTER_SCAN = 20_000
#: Metrics of each run whose latest values the run list carries unasked (the first by name).
LIST_LATEST_METRICS = 16
#: Metrics a run list may ask for by name (``latest_metrics=a,b``), on top of those.
MAX_NAMED_METRICS = 32
#: Field values of one run in the run list's ``latest``: a metric of thousands of fields is cut there.
MAX_LIST_VALUES = 256
