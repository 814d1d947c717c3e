"""The pure domain: models, ports, errors, the market calendar, indicators, validation, the sizer,
the tier tracker and the risk rules. Nothing here does I/O (no broker, no state, no network, no
logging set-up); tests/unit/test_architecture.py holds it to that."""
