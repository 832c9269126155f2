"""A local control plane for development and tests: kube-apiserver, etcd, stand-in controllers.

A regular package rather than a namespace one so that import-linter (grimp) sees its
modules and the architecture contracts in pyproject.toml cover them.
"""
