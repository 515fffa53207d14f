"""The upload client: what is on disk and not yet acknowledged goes to the server in batches, with retry."""
