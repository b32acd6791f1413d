"""The PyTorch backend: a built graph -> standalone PyTorch source (jinja2 templates).

``cnn`` writes image networks (one class per cell, stages, stem and head), ``lm`` language
models (embedding, one recurrent cell, decoder); ``source`` holds what both write with. The
generated file imports only torch.
"""

from __future__ import annotations

from shrinkc.compiler import ir

from .cnn import generate_cnn
from .lm import generate_lm


def generate(graph: ir.Graph) -> str:
    """The standalone PyTorch source of ``graph``'s network."""
    if isinstance(graph, ir.LMGraph):
        return generate_lm(graph)
    return generate_cnn(graph)


__all__ = ["generate"]
