"""Remote mode: the live run's upload session, reads from a server, ``ml-dash sync`` and ``ml-dash pull``."""
