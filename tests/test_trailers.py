"""Trailers written by gitsync read back the same; those written by people read sensibly."""

from __future__ import annotations

import pytest

from gitsync.trailers import Trailers, parse

SHA = "0123456789abcdef0123456789abcdef01234567"
OLD = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("trailers", "block"),
    [
        (Trailers(), ""),
        (Trailers(source_commit=SHA), f"Gitsync-Source-Commit: {SHA}\n"),
        (
            Trailers(source_commit=SHA, instance="prod"),
            f"Gitsync-Source-Commit: {SHA}\nGitsync-Instance: prod\n",
        ),
        (
            Trailers(source_commit=SHA, reverts=OLD),
            f"Gitsync-Source-Commit: {SHA}\nReverts: {OLD}\n",
        ),
        (
            Trailers(source_commit=SHA, instance="eu west", reverts=OLD),
            f"Gitsync-Source-Commit: {SHA}\nGitsync-Instance: eu west\nReverts: {OLD}\n",
        ),
    ],
)
def test_format_and_parse_round_trip(trailers: Trailers, block: str) -> None:
    assert trailers.format() == block
    message = f"gitsync status: 1 healthy\n\n- ModelDeployment ml/fraud: Healthy\n\n{block}"
    assert parse(message) == trailers


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("", Trailers(), id="empty"),
        pytest.param(f"Gitsync-Source-Commit: {SHA}\n", Trailers(), id="subject only"),
        pytest.param(
            f"Fix the fraud model\n\nGitsync-Source-Commit: {SHA}\nSigned-off-by: Dana <d@x.io>\n",
            Trailers(source_commit=SHA),
            id="next to Signed-off-by",
        ),
        pytest.param(
            f"Revert fraud\r\n\r\nReverts: {OLD}\r\nGitsync-Source-Commit: {SHA}\r\n",
            Trailers(source_commit=SHA, reverts=OLD),
            id="CRLF line ends",
        ),
        pytest.param(
            f"Revert fraud\n\nreverts:{OLD}\ngitsync-instance :  prod  \n\n\n",
            Trailers(instance="prod", reverts=OLD),
            id="any case, loose spacing, trailing blank lines",
        ),
        pytest.param(
            f"Revert fraud\n\nReverts: {OLD}\nGitsync-Source-Commit: {SHA}\n"
            "(cherry picked from commit 1234567)\n",
            Trailers(source_commit=SHA, reverts=OLD),
            id="cherry-picked with -x",
        ),
        pytest.param(
            f"Status\n\nGitsync-Source-Commit: {SHA}\n\nThanks to Dana for the review.\n",
            Trailers(),
            id="trailers not in the last paragraph",
        ),
        pytest.param(
            f"Status\n\nGitsync-Source-Commit: {SHA}\nwhich was the last good one\n",
            Trailers(),
            id="prose in the last paragraph",
        ),
        pytest.param(
            f"Status\n\nGitsync-Instance: prod\n  eu\nGitsync-Source-Commit: {OLD}\n"
            f"Gitsync-Source-Commit: {SHA}\n",
            Trailers(source_commit=SHA, instance="prod eu"),
            id="folded value, repeated key",
        ),
    ],
)
def test_parse_messages_people_write(message: str, expected: Trailers) -> None:
    assert parse(message) == expected


def test_a_value_must_be_one_line() -> None:
    with pytest.raises(ValueError, match="one line"):
        Trailers(instance="prod\nReverts: x")
