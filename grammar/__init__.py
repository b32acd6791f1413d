"""The .shrink grammar (a data package: shrink.lark)."""
