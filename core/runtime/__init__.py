"""Runtime plumbing of a long-running process: logging set-up, the state directory's process lock,
systemd notification, atomic file writes, stop signals and the version."""
