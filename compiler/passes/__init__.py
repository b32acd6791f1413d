"""Passes over the IR. Each is a function from IR to IR, in its own module."""
