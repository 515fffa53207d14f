"""One run's machinery behind the SDK's facades: session, config, resume, the one-writer lock, snapshots."""
