"""The PyTorch backend: a built graph -> standalone PyTorch source (jinja2 templates).

``cnn`` writes image networks (one class per cell, stages, stem and head), ``lm`` language
models (embedding, one recurrent cell, decoder). The generated file imports only torch.
"""

from .cnn import generate

__all__ = ["generate"]
