"""The one error hierarchy of gitsync.

Every failure that crosses a module boundary is a :class:`GitsyncError`; third-party
exceptions are wrapped where they enter (``raise ... from exc``). Each error class
carries a :class:`Remedy` so callers decide what to do from the type, never from the
message: retry soon, wait for a new commit, or give up.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "ApiConflictError",
    "ApiForbiddenError",
    "ApiInvalidError",
    "ApiThrottledError",
    "ApiUnavailableError",
    "BuildError",
    "ConfigurationError",
    "ControlPlaneError",
    "GitAuthError",
    "GitError",
    "GitUnavailableError",
    "GitsyncError",
    "LeadershipLostError",
    "NotFoundError",
    "OverrideError",
    "PushConflictError",
    "PushRejectedError",
    "QuantityError",
    "Remedy",
    "SpecError",
    "TransientError",
    "WatchExpiredError",
]


class Remedy(enum.Enum):
    """What the caller should do about an error."""

    RETRY = "retry"
    """Transient: the same work may succeed if tried again later."""
    WAIT_FOR_COMMIT = "wait-for-commit"
    """The input is wrong: nothing changes until someone pushes a new commit."""
    FAIL = "fail"
    """The setup is wrong: stop and tell the operator."""


class GitsyncError(Exception):
    """Base of all gitsync errors."""

    remedy: ClassVar[Remedy] = Remedy.FAIL


class TransientError(GitsyncError):
    """A dependency (API server, git remote, network) failed in a way that may pass."""

    remedy = Remedy.RETRY


class ConfigurationError(GitsyncError):
    """Options, environment or files given to gitsync are unusable."""

    remedy = Remedy.FAIL


class BuildError(GitsyncError):
    """Building the local control-plane binaries from Go modules failed."""

    remedy = Remedy.FAIL


class ControlPlaneError(TransientError):
    """The local control plane did not start or become ready in time."""


class ApiUnavailableError(TransientError):
    """The API server could not be reached or answered with a server error."""


class ApiThrottledError(ApiUnavailableError):
    """The API server asked us to come back later (HTTP 429: priority and fairness, or
    a starting server's "storage is initializing"): a wait, not a fault."""


class ApiConflictError(TransientError):
    """A write conflicted (stale resourceVersion, or a field owned by another manager)."""


class LeadershipLostError(TransientError):
    """This replica no longer holds the leader Lease (or could not renew it in time):
    it must not start another write. Another replica carries on; this one waits."""


class WatchExpiredError(TransientError):
    """A watch's resourceVersion is too old (HTTP 410): list again, then watch."""


class ApiInvalidError(GitsyncError):
    """The API server rejected an object as invalid; only a changed spec can fix it."""

    remedy = Remedy.WAIT_FOR_COMMIT


class ApiForbiddenError(GitsyncError):
    """Authentication or RBAC denied a request: the operator must grant access."""

    remedy = Remedy.FAIL


class NotFoundError(GitsyncError):
    """The object, or the kind itself, does not exist on the API server."""

    remedy = Remedy.FAIL


class GitError(GitsyncError):
    """Base of failures talking to a git remote or reading a repository."""


class GitUnavailableError(GitError, TransientError):
    """The remote could not be reached, timed out, or dropped the connection."""


class GitAuthError(GitError):
    """The remote refused our credentials or host key: the operator must fix them."""

    remedy = Remedy.FAIL


class PushRejectedError(GitError):
    """The remote refused a push on its own terms (a hook, a protected branch)."""

    remedy = Remedy.FAIL


class PushConflictError(GitError, TransientError):
    """Our push stayed non-fast-forward after every fetch-and-reapply attempt."""


class SpecError(GitsyncError):
    """A spec file cannot be loaded or validated; only a new commit can fix it."""

    remedy = Remedy.WAIT_FOR_COMMIT


class OverrideError(SpecError):
    """One of a spec's ``overrides`` cannot be applied to its rendered object (a path
    that is not there, a failed ``test``, a change of the object's identity)."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        #: Which override of ``spec.overrides`` failed.
        self.index = index


class QuantityError(SpecError, ValueError):
    """A string that is not a Kubernetes quantity, or an impossible conversion.

    A ``ValueError`` too, so that pydantic validators report it as a field error."""
