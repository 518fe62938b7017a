"""Checkpoints in Ed25519 signed notes, verifier keys, and the signing key file."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    SignedNote,
    SigningKey,
    VerifierKey,
    load_or_create_signing_key,
    open_checkpoint,
)

ROOT = hashlib.sha256(b"root").digest()


def _key(name: str = "example.org/log") -> SigningKey:
    return SigningKey(name, Ed25519PrivateKey.generate())


def test_signed_note_shape() -> None:
    key = _key()
    note = key.sign(Checkpoint("example.org/log", 42, ROOT))
    body, sig = note.split("\n\n")
    assert body == f"example.org/log\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith("\u2014 example.org/log ") and sig.endswith("\n")
    blob = base64.b64decode(sig.split(" ")[-1])
    assert blob[:4] == key.verifier.key_id and len(blob) == 68
    raw = key.verifier.raw
    assert key.verifier.key_id == hashlib.sha256(b"example.org/log\n\x01" + raw).digest()[:4]


def test_open_checkpoint_round_trip() -> None:
    key = _key()
    cp = Checkpoint("example.org/log", 7, ROOT)
    assert open_checkpoint(key.sign(cp), key.verifier, "example.org/log") == cp


def test_wrong_key_wrong_origin_and_altered_text_fail() -> None:
    key = _key()
    note = key.sign(Checkpoint("example.org/log", 7, ROOT))
    with pytest.raises(CheckpointError):
        open_checkpoint(note, _key().verifier)
    with pytest.raises(CheckpointError):
        open_checkpoint(note, key.verifier, "other.org/log")
    with pytest.raises(CheckpointError):
        open_checkpoint(note.replace("\n7\n", "\n8\n"), key.verifier)
    # same name, another key: the key id differs, so the signature line is not even tried
    impostor = SigningKey("example.org/log", Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointError):
        open_checkpoint(impostor.sign(Checkpoint("example.org/log", 7, ROOT)), key.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no blank line\n",
        "o\n1\nAAAA\n\n\u2014 o AAAAAAAA\n",
        "o\n01\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\nx\n" + base64.b64encode(ROOT).decode() + "\n",
    ],
)
def test_malformed_notes_and_bodies(text: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(text, _key("o").verifier)
    with pytest.raises(CheckpointError):
        Checkpoint.parse_body(text.split("\n\n")[0] + "\n" if text else text)


def test_verifier_key_round_trip() -> None:
    key = _key().verifier
    text = key.encode()
    assert text.startswith("example.org/log+")
    parsed = VerifierKey.parse(text)
    assert (parsed.name, parsed.raw) == (key.name, key.raw)
    name, _kid, blob = text.split("+", 2)
    with pytest.raises(CheckpointError):
        VerifierKey.parse(f"{name}+00000000+{blob}")


def test_signing_key_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit-signing-key.pem"
    first = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_signing_key(path)
    assert SigningKey("n", first).verifier.raw == SigningKey("n", second).verifier.raw


def test_signature_lines_parse() -> None:
    key = _key()
    note = SignedNote.parse(key.sign(Checkpoint("example.org/log", 1, ROOT)))
    assert note.verify(key.verifier)
    assert note.signatures[0][0] == "example.org/log"
