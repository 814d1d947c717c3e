"""The adapter layer: the only package that imports alpaca-py.

Everything crossing this boundary is converted into `core.models` types and `core.errors`
exceptions, so the agents never see an SDK object or an SDK exception.
"""
