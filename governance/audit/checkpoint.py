"""Signed checkpoints: the C2SP tlog-checkpoint body inside a C2SP signed note, signed with Ed25519.

A checkpoint is the text::

    <origin>\\n<tree size, decimal>\\n<root hash, standard base64>\\n

and the signed note appends a blank line and one signature line per signer::

    \\n— <key name> <base64(4-byte key id || 64-byte Ed25519 signature over the text above)>\\n

The key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || raw 32-byte public key), and the public
key is published as a verifier key, ``<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>``: the same
shapes that Go's sumdb and Sigstore's Rekor use, so their tooling can read our checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governance.audit.merkle import HASH_SIZE

DEFAULT_ORIGIN = "commons.local/audit"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space start every signature line
ED25519_TYPE = b"\x01"


class CheckpointError(ValueError):
    """A checkpoint or signed note is malformed, or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode('ascii')}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError(
                "a checkpoint is origin, size and root hash lines, each ending in a newline"
            )
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not origin:
            raise CheckpointError("checkpoint origin is empty")
        if not size_text.isdigit() or (len(size_text) > 1 and size_text[0] == "0") or not size_text.isascii():
            raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError("checkpoint root hash is not base64") from exc
        if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_text:
            raise CheckpointError("checkpoint root hash is not a base64 SHA-256 hash")
        return cls(origin, int(size_text), root)


# -- keys ------------------------------------------------------------------------------------------------------


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + _raw(public_key)).digest()[:4]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key, as written in signed-note verifier-key form."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def raw(self) -> bytes:
        return _raw(self.public_key)

    def encode(self) -> str:
        encoded = base64.b64encode(ED25519_TYPE + self.raw).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)  # names never contain "+", base64 may
        if len(parts) != 3 or not parts[0]:
            raise CheckpointError("a verifier key is <name>+<key id hex>+<base64 key>")
        name, kid, encoded = parts
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError("verifier key is not base64") from exc
        if len(blob) != 33 or blob[:1] != ED25519_TYPE:
            raise CheckpointError("verifier key is not an Ed25519 key")
        if base64.b64encode(blob).decode("ascii") != encoded:
            raise CheckpointError("verifier key is not canonical base64")
        key = cls(name, Ed25519PublicKey.from_public_bytes(blob[1:]))
        if key.key_id.hex() != kid:
            raise CheckpointError("verifier key id does not match its key")
        return key


@dataclass(frozen=True)
class SigningKey:
    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not self.name or "+" in self.name or any(c.isspace() for c in self.name):
            raise CheckpointError(f"key name {self.name!r} must be non-empty, without '+' or spaces")

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.private_key.public_key())

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note: checkpoint body, blank line, one signature line."""
        body = checkpoint.body()
        signature = self.private_key.sign(body.encode("utf-8"))
        blob = base64.b64encode(self.verifier.key_id + signature).decode("ascii")
        return f"{body}\n{SIGNATURE_PREFIX}{self.name} {blob}\n"


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the PEM (PKCS#8) Ed25519 key at ``path``, creating it (mode 0600) on first use.

    Creation is exclusive, so two processes starting together end up with the same key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its key below
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise CheckpointError(f"{path} does not hold an Ed25519 private key")
    return loaded


# -- signed notes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedNote:
    body: str
    signatures: list[tuple[str, bytes, bytes]]  # (key name, key id, signature)

    @classmethod
    def parse(cls, text: str) -> SignedNote:
        split = text.rfind("\n\n")
        if split < 0:
            raise CheckpointError("a signed note needs a blank line between text and signatures")
        body, sig_block = text[: split + 1], text[split + 2 :]
        if not sig_block.endswith("\n"):
            raise CheckpointError("a signed note ends with a newline")
        signatures: list[tuple[str, bytes, bytes]] = []
        for line in sig_block[:-1].split("\n"):
            if not line.startswith(SIGNATURE_PREFIX):
                raise CheckpointError(f"malformed signature line {line!r}")
            name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
            try:
                blob = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise CheckpointError("signature is not base64") from exc
            if not name or len(blob) < 5 or base64.b64encode(blob).decode("ascii") != encoded:
                raise CheckpointError(f"malformed signature line {line!r}")
            signatures.append((name, blob[:4], blob[4:]))
        if not signatures:
            raise CheckpointError("the note has no signature")
        return cls(body, signatures)

    def verify(self, key: VerifierKey) -> bool:
        """True when some signature line is a valid signature by ``key``."""
        for name, kid, signature in self.signatures:
            if name == key.name and kid == key.key_id:
                try:
                    key.public_key.verify(signature, self.body.encode("utf-8"))
                except InvalidSignature:
                    continue
                return True
        return False


def open_checkpoint(text: str, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Parse a signed checkpoint and check it is signed by ``key`` (and names ``origin``, when given)."""
    note = SignedNote.parse(text)
    if not note.verify(key):
        raise CheckpointError(f"checkpoint is not signed by the key {key.name}+{key.key_id.hex()}")
    checkpoint = Checkpoint.parse_body(note.body)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
