"""The server's storage: typed records, the backend-neutral chunk and page formats, and the backends (sqlite/)."""
