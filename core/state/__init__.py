"""Durable state of the daemon: a single SQLite database in STATE_DIR (see `core.state.store`)."""
