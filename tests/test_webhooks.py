"""Webhook deliveries judged as data: signatures, tokens, events and branches."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from gitsync.webhooks import (
    MAX_BODY_BYTES,
    Forge,
    HookVerdict,
    judge,
    signature_matches,
    token_matches,
)

SECRET = b"It's a Secret to Everybody"
PUSH_MAIN = orjson.dumps({"ref": "refs/heads/main", "after": "0" * 40})


def sign(body: bytes, secret: bytes = SECRET, prefix: str = "sha256=") -> str:
    return prefix + hmac.new(secret, body, hashlib.sha256).hexdigest()


HUGE = b"x" * (MAX_BODY_BYTES * 2)


@pytest.mark.parametrize(
    ("header", "body", "secret", "expected"),
    [
        pytest.param(sign(PUSH_MAIN), PUSH_MAIN, SECRET, True, id="good"),
        pytest.param(
            sign(PUSH_MAIN).upper().replace("SHA256=", "sha256="),
            PUSH_MAIN,
            SECRET,
            True,
            id="upper-case-hex",
        ),
        pytest.param(sign(PUSH_MAIN, b"another secret"), PUSH_MAIN, SECRET, False, id="bad"),
        pytest.param(None, PUSH_MAIN, SECRET, False, id="missing"),
        pytest.param("", PUSH_MAIN, SECRET, False, id="empty-header"),
        pytest.param(sign(PUSH_MAIN)[len("sha256=") :], PUSH_MAIN, SECRET, False, id="no-prefix"),
        pytest.param(
            "sha1=" + hmac.new(SECRET, PUSH_MAIN, hashlib.sha1).hexdigest(),
            PUSH_MAIN,
            SECRET,
            False,
            id="wrong-algorithm-prefix",
        ),
        pytest.param(
            sign(PUSH_MAIN, prefix="sha512="),
            PUSH_MAIN,
            SECRET,
            False,
            id="sha256-digest-under-another-prefix",
        ),
        pytest.param(sign(PUSH_MAIN, b""), PUSH_MAIN, b"", False, id="empty-secret"),
        pytest.param(sign(HUGE), HUGE, SECRET, True, id="huge-body-still-verifies"),
        pytest.param(sign(PUSH_MAIN), PUSH_MAIN[:-5], SECRET, False, id="truncated-body"),
        pytest.param(sign(PUSH_MAIN)[:-2], PUSH_MAIN, SECRET, False, id="truncated-signature"),
        pytest.param("sha256=\u00e9\u00ff" * 8, PUSH_MAIN, SECRET, False, id="latin-1-garbage"),
    ],
)
def test_signature(header: str | None, body: bytes, secret: bytes, expected: bool) -> None:
    assert signature_matches(header, body=body, secret=secret) is expected


@pytest.mark.parametrize(
    ("header", "secret", "expected"),
    [
        (SECRET.decode(), SECRET, True),
        ("it's a secret to everybody", SECRET, False),
        (SECRET.decode()[:-1], SECRET, False),
        (None, SECRET, False),
        ("", b"", False),
    ],
    ids=["good", "wrong-case", "prefix-only", "missing", "empty-secret"],
)
def test_gitlab_token(header: str | None, secret: bytes, expected: bool) -> None:
    assert token_matches(header, secret=secret) is expected


def github(body: bytes, event: str = "push", signature: str | None = None) -> dict[str, str]:
    return {"x-github-event": event, "x-hub-signature-256": signature or sign(body)}


def gitlab(event: str = "Push Hook", token: str = SECRET.decode()) -> dict[str, str]:
    return {"x-gitlab-event": event, "x-gitlab-token": token}


def generic(body: bytes) -> dict[str, str]:
    return {"x-gitsync-signature": sign(body)}


OTHER = orjson.dumps({"ref": "refs/heads/feature"})
TAG = orjson.dumps({"ref": "refs/tags/v1"})


@pytest.mark.parametrize(
    ("forge", "headers", "body", "verdict"),
    [
        (Forge.GITHUB, github(PUSH_MAIN), PUSH_MAIN, HookVerdict.WAKE),
        (Forge.GITHUB, github(OTHER), OTHER, HookVerdict.IGNORED),
        (Forge.GITHUB, github(TAG), TAG, HookVerdict.IGNORED),
        (Forge.GITHUB, github(b"{}", "ping"), b"{}", HookVerdict.IGNORED),
        (Forge.GITHUB, github(b"{}", "issues"), b"{}", HookVerdict.IGNORED),
        (Forge.GITHUB, github(b"{not json"), b"{not json", HookVerdict.MALFORMED),
        (Forge.GITHUB, github(b"[1]"), b"[1]", HookVerdict.MALFORMED),
        (Forge.GITHUB, github(b'{"ref": 7}'), b'{"ref": 7}', HookVerdict.MALFORMED),
        # An unsigned sender never reaches the parser, nor learns the body was bad.
        (
            Forge.GITHUB,
            github(b"{not json", signature="sha256=00"),
            b"{not json",
            HookVerdict.UNAUTHORIZED,
        ),
        (Forge.GITHUB, {"x-github-event": "push"}, PUSH_MAIN, HookVerdict.UNAUTHORIZED),
        (Forge.GITHUB, github(PUSH_MAIN, "ping", "sha256=00"), PUSH_MAIN, HookVerdict.UNAUTHORIZED),
        (Forge.GITLAB, gitlab(), PUSH_MAIN, HookVerdict.WAKE),
        (Forge.GITLAB, gitlab(), OTHER, HookVerdict.IGNORED),
        (Forge.GITLAB, gitlab("Tag Push Hook"), TAG, HookVerdict.IGNORED),
        (Forge.GITLAB, gitlab(token="guess"), PUSH_MAIN, HookVerdict.UNAUTHORIZED),
        (Forge.GITLAB, gitlab(), b"\xff\xfe", HookVerdict.MALFORMED),
        # A GitHub signature means nothing to the GitLab endpoint, and back.
        (Forge.GITLAB, github(PUSH_MAIN), PUSH_MAIN, HookVerdict.UNAUTHORIZED),
        (Forge.GITHUB, gitlab(), PUSH_MAIN, HookVerdict.UNAUTHORIZED),
        (Forge.GENERIC, generic(b"{}"), b"{}", HookVerdict.WAKE),
        (Forge.GENERIC, generic(PUSH_MAIN), PUSH_MAIN, HookVerdict.WAKE),
        (Forge.GENERIC, generic(OTHER), OTHER, HookVerdict.IGNORED),
        (Forge.GENERIC, generic(b""), b"", HookVerdict.MALFORMED),
        (Forge.GENERIC, github(PUSH_MAIN), PUSH_MAIN, HookVerdict.UNAUTHORIZED),
    ],
)
def test_judge(forge: Forge, headers: dict[str, str], body: bytes, verdict: HookVerdict) -> None:
    judgement = judge(forge, headers=headers, body=body, secret=SECRET, branch="main")
    assert judgement.verdict is verdict, judgement.reason
    assert SECRET.decode() not in judgement.reason


def test_an_empty_secret_refuses_even_a_matching_signature() -> None:
    headers = {"x-github-event": "push", "x-hub-signature-256": sign(PUSH_MAIN, b"")}
    judgement = judge(Forge.GITHUB, headers=headers, body=PUSH_MAIN, secret=b"", branch="main")
    assert judgement.verdict is HookVerdict.UNAUTHORIZED
