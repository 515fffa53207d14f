"""The contracts every side shares (SDK, agent, server, CLI): layout, JSON lines, values, wire, cursors.

Nothing here imports the SDK, the engine or the server (tests/test_layers.py)."""
