"""The ONNX backend: a built graph (and optionally trained weights) -> an ONNX model.

Built straight from the IR with ``onnx.helper``; never imports torch. ``cnn`` writes image
networks, ``lm`` language models (the time loop as a Scan), ``checkpoint`` reads and checks
trained weights against the generated module's state_dict layout.
"""

from .cnn import FUNCTION_DOMAIN, OPSET, generate, ir_version, serialize

__all__ = ["FUNCTION_DOMAIN", "OPSET", "generate", "ir_version", "serialize"]
