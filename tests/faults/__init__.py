"""Fault tests: inputs and servers that break in every way we found, nothing lost."""
