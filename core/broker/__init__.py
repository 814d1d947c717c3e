"""The adapter layer: the only package that imports alpaca-py.

Everything crossing this boundary is converted into `core.domain.models` types and `core.domain.errors`
exceptions, so the agents never see an SDK object or an SDK exception.
"""
