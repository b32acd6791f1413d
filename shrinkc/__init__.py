"""shrinkc: a compiler for neural-network architectures."""

from shrinkc.compiler.version import __version__

__all__ = ["__version__"]
