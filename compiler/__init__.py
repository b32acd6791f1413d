"""The shrinkc compiler: ``.shrink`` text -> IR -> passes. Never imports torch."""

from .errors import Diagnostic, ShrinkError
from .pipeline import build_graph, check, compile_file
from .syntax.parser import parse, parse_file

__all__ = ["Diagnostic", "ShrinkError", "build_graph", "check", "compile_file", "parse", "parse_file"]
