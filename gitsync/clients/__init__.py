"""Edges of gitsync: the only modules that talk to the outside world."""
