"""Text to IR and back: the lark parser, the printer (``shrinkc fmt``), source highlighting."""
