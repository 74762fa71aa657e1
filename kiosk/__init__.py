"""The running product: configuration, sources, live pipeline, trials, windows, CLI."""

__version__ = "0.1.0"
