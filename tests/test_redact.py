"""Credentials never survive :func:`gitsync.redact.redact`, in any URL form or header."""

from __future__ import annotations

import pytest

from gitsync.redact import redact, url_secrets


@pytest.mark.parametrize(
    ("text", "expected", "secret"),
    [
        pytest.param(
            "Authorization: token ghp_abcdefgh1234",
            "Authorization: token ***",
            "ghp_abcdefgh1234",
            id="github-token-scheme",
        ),
        pytest.param(
            "authorization: bearer abcdefghijk",
            "authorization: bearer ***",
            "abcdefghijk",
            id="lower-case-bearer",
        ),
        pytest.param(
            "PRIVATE-TOKEN: glpat-abcdefgh12", "PRIVATE-TOKEN: ***", "glpat-abcdefgh12", id="gitlab"
        ),
        pytest.param(
            "https://h/cb#access_token=abcdefghij&x=1",
            "https://h/cb#access_token=***&x=1",
            "abcdefghij",
            id="fragment-token",
        ),
        pytest.param(
            "https://user:tok@host/x.git", "https://***@host/x.git", "tok", id="user-password"
        ),
        pytest.param("https://:tok@host/x.git", "https://***@host/x.git", "tok", id="password"),
        pytest.param(
            "https://ghp_0123456789abcdef@github.com/o/r.git",
            "https://***@github.com/o/r.git",
            "ghp_0123456789abcdef",
            id="token-as-user",
        ),
        pytest.param(
            "http://x-access-token:ghs_abc@127.0.0.1:8080/r",
            "http://***@127.0.0.1:8080/r",
            "ghs_abc",
            id="user-password-port",
        ),
        pytest.param(
            "https://u:p@ss@host/x.git", "https://***@host/x.git", "p@ss", id="unescaped-at"
        ),
        pytest.param(
            "https://u:p%40ss@[::1]:443/x", "https://***@[::1]:443/x", "p%40ss", id="ipv6"
        ),
        pytest.param(
            "https://gitlab.com/o/r.git?private_token=glpat-xyz",
            "https://gitlab.com/o/r.git?private_token=***",
            "glpat-xyz",
            id="private-token",
        ),
        pytest.param(
            "https://h/api?access_token=abc&page=2",
            "https://h/api?access_token=***&page=2",
            "abc",
            id="access-token",
        ),
        pytest.param("https://h/x?token=abc#top", "https://h/x?token=***#top", "abc", id="token"),
        pytest.param(
            "https://b.s3.amazonaws.com/m?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature=deadbeef",
            "https://b.s3.amazonaws.com/m?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=***&X-Amz-Signature=***",
            "deadbeef",
            id="presigned-s3",
        ),
        pytest.param(
            "https://a.blob.core.windows.net/c/m?sv=2022&sig=Zm9v",
            "https://a.blob.core.windows.net/c/m?sv=2022&sig=***",
            "Zm9v",
            id="azure-sas",
        ),
        pytest.param(
            "ssh://git:pw@host/r.git", "ssh://***@host/r.git", "pw", id="ssh-with-password"
        ),
        pytest.param(
            "git remote 'https://tok@h/x.git' wants credentials",
            "git remote 'https://***@h/x.git' wants credentials",
            "tok",
            id="quoted-in-a-sentence",
        ),
        pytest.param(
            "clone https://u:p1@a/x and http://v:q2@b:8080/y, then stop.",
            "clone https://***@a/x and http://***@b:8080/y, then stop.",
            "q2",
            id="two-urls-and-punctuation",
        ),
        pytest.param(
            "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y",
            "Authorization: Bearer ***",
            "eyJhbGciOiJSUzI1NiJ9",
            id="bearer-header",
        ),
        pytest.param(
            "{'authorization': 'Basic dXNlcjpwYXNz'}",
            "{'authorization': 'Basic ***'}",
            "dXNlcjpwYXNz",
            id="basic-header-dict",
        ),
    ],
)
def test_credentials_are_redacted(text: str, expected: str, secret: str) -> None:
    assert redact(text) == expected
    assert secret not in redact(text)
    assert redact(expected) == expected  # idempotent: redacting twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "https://host:8443/x.git",
        "git@github.com:org/repo.git",  # scp-like: no place for a password
        "ssh://git@host:2222/repo.git",  # SSH never authenticates by the user name
        "/srv/git/repo.git",
        "https://h/x?ref=main&page=2",
        "a bearer token was refused",
        "GET /apis/serving.kserve.io/v1beta1/inferenceservices?labelSelector=a%3Db",
    ],
)
def test_what_holds_no_credential_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("https://tok@h/x", ("tok",)),
        ("https://x-access-token:ghs@h/x", ("ghs",)),  # the user name is no secret here
        ("https://h/x?private_token=glpat&page=2", ("glpat",)),
        ("ssh://git@h/x", ()),
        ("https://h/x", ()),
    ],
)
def test_url_secrets_are_what_to_scrub_elsewhere(url: str, secrets: tuple[str, ...]) -> None:
    assert url_secrets(url) == secrets
