"""Backends: standalone PyTorch source (jinja2 templates) and ONNX graphs."""
