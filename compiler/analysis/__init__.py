"""Analyses over the IR that are not passes: cell hashing (WL) and the semantic diff."""
