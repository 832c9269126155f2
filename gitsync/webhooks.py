"""Push webhooks from forges, judged as data: is it authentic, and should it wake us?

A webhook only makes gitsync fetch sooner; what it fetches is still whatever the
remote holds, so a forged or replayed hook can at worst cost one extra cycle. Still,
every byte comes from the network: the body is checked for its signature *before* it
is parsed (an unauthenticated sender never reaches the JSON parser), comparisons are
constant-time (:func:`hmac.compare_digest`), and the verdict names what was wrong
without echoing a header back.

The three schemes, as the forges document them:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, event in
  ``X-GitHub-Event`` (``push``, ``ping``);
* GitLab: ``X-Gitlab-Token`` is the secret itself (GitLab signs nothing), event in
  ``X-Gitlab-Event`` (``Push Hook``);
* generic (CI jobs, Gitea, anything that can compute an HMAC):
  ``X-Gitsync-Signature: sha256=<hex HMAC-SHA256 of the body>``; the body is a JSON
  object, and a ``ref`` in it (``refs/heads/<branch>``) narrows the wake to that branch.

The HTTP side (reading a bounded body, mapping verdicts to status codes) is
:mod:`gitsync.listener`'s; everything here is a pure function of headers and bytes.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson

__all__ = [
    "GENERIC_SIGNATURE_HEADER",
    "MAX_BODY_BYTES",
    "Forge",
    "HookVerdict",
    "Judgement",
    "judge",
    "signature_matches",
    "token_matches",
]

#: GitHub caps payloads at 25 MB, but a push event is a few KiB per commit; one MiB
#: holds hundreds of commits and keeps a hostile body from costing real memory.
MAX_BODY_BYTES: Final = 1 << 20
GENERIC_SIGNATURE_HEADER: Final = "x-gitsync-signature"
_SHA256_PREFIX: Final = "sha256="
_HEADS: Final = "refs/heads/"


class Forge(enum.Enum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GENERIC = "generic"


class HookVerdict(enum.Enum):
    WAKE = "wake"
    """Authentic, and about the watched branch: run a cycle now."""
    IGNORED = "ignored"
    """Authentic but nothing to do (another branch, a ping, another event)."""
    UNAUTHORIZED = "unauthorized"
    """Signature or token missing or wrong: nothing happens."""
    MALFORMED = "malformed"
    """Authentic, but the body is not the JSON the forge sends."""


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: HookVerdict
    #: For the response and the log; never quotes a header or the secret.
    reason: str


def signature_matches(header: str | None, *, body: bytes, secret: bytes) -> bool:
    """True when ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body``.

    An empty secret never matches: anyone can compute an HMAC with an empty key.
    """
    if not secret or header is None or not header.startswith(_SHA256_PREFIX):
        return False
    expected = _SHA256_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()
    # compare_digest takes ASCII str or bytes; a header may hold any Latin-1 text.
    return hmac.compare_digest(
        expected.encode(), header.strip().lower().encode("latin-1", "replace")
    )


def token_matches(header: str | None, *, secret: bytes) -> bool:
    """True when ``header`` is the secret itself (GitLab's scheme), compared in
    constant time; an empty secret never matches."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret, header.encode("latin-1", "replace"))


def judge(
    forge: Forge, *, headers: Mapping[str, str], body: bytes, secret: bytes, branch: str
) -> Judgement:
    """What to do with one hook delivery; ``headers`` keyed in lower case."""
    if not _authentic(forge, headers=headers, body=body, secret=secret):
        return Judgement(HookVerdict.UNAUTHORIZED, "missing or wrong signature")
    event = _event(forge, headers)
    if event != "push":
        return Judgement(HookVerdict.IGNORED, "ping" if event == "ping" else "not a push event")
    return _push(forge, body=body, branch=branch)


def _push(forge: Forge, *, body: bytes, branch: str) -> Judgement:
    """Whether an authentic push event names the watched branch."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Judgement(HookVerdict.MALFORMED, "the body is not JSON")
    if not isinstance(payload, dict):
        return Judgement(HookVerdict.MALFORMED, "the body is not a JSON object")
    ref = payload.get("ref")
    if ref is None and forge is Forge.GENERIC:
        return Judgement(HookVerdict.WAKE, "a push")
    if not isinstance(ref, str):
        return Judgement(HookVerdict.MALFORMED, "the push has no ref")
    if ref != _HEADS + branch:
        # The ref comes from an authentic sender; cut short, it is safe to say back.
        return Judgement(HookVerdict.IGNORED, f"a push to {ref[:200]}, not {_HEADS + branch}")
    return Judgement(HookVerdict.WAKE, f"a push to {ref}")


def _authentic(forge: Forge, *, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    if forge is Forge.GITHUB:
        return signature_matches(headers.get("x-hub-signature-256"), body=body, secret=secret)
    if forge is Forge.GITLAB:
        return token_matches(headers.get("x-gitlab-token"), secret=secret)
    return signature_matches(headers.get(GENERIC_SIGNATURE_HEADER), body=body, secret=secret)


def _event(forge: Forge, headers: Mapping[str, str]) -> str:
    """``push``, ``ping`` or what else the forge named, in one vocabulary."""
    if forge is Forge.GITHUB:
        return headers.get("x-github-event", "")
    if forge is Forge.GITLAB:
        return "push" if headers.get("x-gitlab-event") == "Push Hook" else "other"
    return "push"
