"""Credentials out of text: the one filter every message, log line and status goes through.

A secret reaches text by many roads: a token written into a repository URL (as its
password, or as its user name, the form GitHub documents), a presigned URL's query
(``X-Amz-Signature``, ``?access_token=``), a library echoing the URL it failed on, an
``Authorization`` header quoted in an error. Redacting at each place a message is
built missed some (issue 9: a token-as-user URL in an auth error); so the rule lives
here once, and the outputs apply it wholesale: the git client to the URL it shows and
every error it raises, the logging set-up to every string of every event, the CLI to
the message it prints last.

Pure and conservative: it redacts what *might* be a secret (the whole userinfo of an
HTTP URL, any query parameter whose name smells of one), since an over-redacted
message still says which host failed, and an under-redacted one cannot be unsent.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "redact", "url_secrets"]

REDACTED: Final = "***"

_URL: Final = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>[^\s'\"<>`]*[^\s'\"<>`.,;:!?)])"
)
"""A URL in free text: up to whitespace, a quote or a bracket around it, without the
punctuation of the sentence it ends."""
_QUERY_PARAM: Final = re.compile(r"(?P<key>[^&;=#]+)=(?P<value>[^&;#]*)")
_SENSITIVE_PARTS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "credential",
    "apikey",
    "auth",
    "key",
    "session",
)
"""A query parameter whose name, lower-cased without ``-`` and ``_``, contains one of
these carries a secret: access_token, private_token, X-Amz-Signature,
X-Amz-Credential, X-Amz-Security-Token, X-Goog-Signature, client_secret, api_key..."""
_SENSITIVE_NAMES: Final = frozenset({"sig", "code"})
"""Exact names: Azure SAS ``sig``, an OAuth authorization ``code``."""
_SSH_SCHEMES: Final = frozenset({"ssh", "git+ssh", "ssh+git"})
"""SSH never authenticates by the user name, so ``ssh://git@host`` keeps its ``git``."""
_AUTH_HEADER: Final = re.compile(
    r"(?P<head>\b(?:Bearer|Basic|bearer|basic) +"
    r"|\b(?i:authorization|private-token|x-gitlab-token|x-api-key)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?i:bearer|basic|token) +)?)"
    r"(?P<secret>[A-Za-z0-9._~+/=-]{8,})"
)
"""``Authorization: Bearer <token>`` and its shapes (GitHub's ``Authorization: token
<t>``, GitLab's ``PRIVATE-TOKEN: <t>``), as an error may quote a header. A scheme name
alone needs 8 characters after it, so prose ("a bearer token") stays."""


def redact(text: str) -> str:
    """``text`` with every credential in a URL or an auth header replaced by ``***``."""
    if "://" in text:
        text = _URL.sub(_redact_url_match, text)
    return _AUTH_HEADER.sub(_redact_header_match, text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret values one URL holds (userinfo, sensitive query values): what to
    scrub from text that may quote them outside of the URL (a library saying
    "authentication failed for user <token>")."""
    found: list[str] = []
    for match in _URL.finditer(url):
        authority, path = _split_authority(match["rest"])
        userinfo, _, _ = authority.rpartition("@")
        if userinfo and not _keeps_user(match["scheme"], userinfo):
            # The password; or with none, the user name, which then is a token (a real
            # user name beside a password is no secret, and short ones would garble).
            user, colon, password = userinfo.partition(":")
            found.append(password if colon else user)
        _, _, query = path.partition("?")
        found.extend(
            param["value"]
            for param in _QUERY_PARAM.finditer(query.partition("#")[0])
            if param["value"] and _sensitive(param["key"])
        )
    return tuple(secret for secret in found if secret and secret != REDACTED)


def _redact_url_match(match: re.Match[str]) -> str:
    scheme = match["scheme"]
    authority, path = _split_authority(match["rest"])
    # The last '@' ends the userinfo: a password may hold an unescaped '@'.
    userinfo, at, host = authority.rpartition("@")
    if at and not _keeps_user(scheme, userinfo):
        authority = f"{REDACTED}@{host}"
    path, hash_, fragment = path.partition("#")
    base, question, query = path.partition("?")
    if question:
        path = f"{base}?{_QUERY_PARAM.sub(_redact_param_match, query)}"
    if hash_:  # OAuth's implicit flow puts access_token=... in the fragment
        fragment = _QUERY_PARAM.sub(_redact_param_match, fragment)
    return f"{scheme}://{authority}{path}{hash_}{fragment}"


def _split_authority(rest: str) -> tuple[str, str]:
    """The authority of a URL after its ``scheme://``, and everything after it."""
    end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    return rest[:end], rest[end:]


def _keeps_user(scheme: str, userinfo: str) -> bool:
    return scheme.lower() in _SSH_SCHEMES and ":" not in userinfo


def _redact_param_match(match: re.Match[str]) -> str:
    if not match["value"] or not _sensitive(match["key"]):
        return match[0]
    return f"{match['key']}={REDACTED}"


def _sensitive(key: str) -> bool:
    name = key.lower().replace("-", "").replace("_", "")
    return name in _SENSITIVE_NAMES or any(part in name for part in _SENSITIVE_PARTS)


def _redact_header_match(match: re.Match[str]) -> str:
    if match["secret"] == REDACTED:
        return match[0]
    return f"{match['head']}{REDACTED}"
