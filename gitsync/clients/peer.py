"""The one module that talks to another gitsync replica: it hands a push hook that a
standby received on to the leader.

A Service in front of two replicas sends each hook to either of them, and a
standby runs no cycle, so a hook it kept would only be noticed at the leader's next
poll. The standby, having checked the signature itself, passes the delivery on
exactly as it came (body and the forge's own headers), so the leader checks it
again and trusts nothing from the standby. The leader's address is the one it wrote
on the Lease (:data:`gitsync.leader.ANNOTATION_LEADER_URL`), which only those allowed
to write that Lease can set; only http(s) URLs are followed, and a forwarded hook is
never forwarded again (two replicas that both think the other leads must not bounce
it between them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import structlog
import urllib3

__all__ = ["FORWARDED_HEADER", "forward_hook"]

log = structlog.get_logger(__name__)

#: Set on a forwarded hook; a replica never forwards a hook that carries it.
FORWARDED_HEADER: Final = "x-gitsync-forwarded"
#: The forge's headers a hook is judged by; nothing else is passed on.
_PASSED_PREFIXES: Final = ("x-github-", "x-hub-signature", "x-gitlab-", "x-gitsync-")
_TIMEOUT: Final = urllib3.Timeout(connect=1.0, read=2.0)
_POOL: Final = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, timeout=_TIMEOUT)


def forward_hook(leader_url: str, path: str, *, headers: Mapping[str, str], body: bytes) -> bool:
    """POST the hook to the leader's listener; whether the leader accepted it (2xx)."""
    parts = urlsplit(leader_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("hook not forwarded: the leader's URL is not http(s)")
        return False
    passed = {k: v for k, v in headers.items() if k.startswith(_PASSED_PREFIXES)}
    passed |= {"content-type": headers.get("content-type", "application/json")}
    passed[FORWARDED_HEADER] = "1"
    try:
        response = _POOL.request(
            "POST", leader_url.rstrip("/") + path, body=body, headers=passed, redirect=False
        )
    except urllib3.exceptions.HTTPError as exc:
        log.warning("hook not forwarded", leader=parts.netloc, error=type(exc).__name__)
        return False
    if not 200 <= response.status < 300:
        log.warning("hook not forwarded", leader=parts.netloc, status=response.status)
        return False
    return True
