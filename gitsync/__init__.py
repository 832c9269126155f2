"""gitsync: GitOps for ML platforms.

Model deployments and training runs are declared in Git as small specs; gitsync
validates them, renders them into KServe and Kubeflow resources, applies them to
Kubernetes and records what happened back in Git.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
