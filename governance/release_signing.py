"""Released versions signed in the OpenSSF Model Signing format (the ``model-signing`` package, 1.1.x), with
a local elliptic-curve key and no network: anyone can check the released files with that package's own
verifier (``model_signing.verifying.Config().use_elliptic_key_verifier(public_key=PEM).verify(dir, sig)``,
or ``model_signing verify key --signature SIG --public_key PEM DIR``), without Commons.

The key (ECDSA P-256, PEM PKCS#8) lives at ``Settings.model_signing_key_path`` and is created on first use;
its public half is published by ``GET /api/v1/audit/verifier-key`` and carried in every provenance bundle.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

FORMAT = "openssf-model-signing/sigstore-bundle"


def signing_key_path(settings: Any) -> Path:
    """The model-signing private key, created (mode 0600, exclusively) on first use."""
    path = Path(settings.model_signing_key_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    return path


def public_key_pem(settings: Any) -> str:
    key = serialization.load_pem_private_key(signing_key_path(settings).read_bytes(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def sign_model_dir(settings: Any, model_dir: Path) -> dict[str, Any]:
    """Sign the files of ``model_dir``; returns the signature (a Sigstore bundle, as JSON) and the public key."""
    from model_signing import signing

    with tempfile.TemporaryDirectory() as tmp:
        sig = Path(tmp) / "model.sig"
        config = signing.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_signer(private_key=signing_key_path(settings)).sign(model_dir, sig)
        bundle = json.loads(sig.read_text())
    return {"format": FORMAT, "signature": bundle, "public_key_pem": public_key_pem(settings)}


def verify_model_dir(model_dir: Path, signature: dict[str, Any], public_key_pem: str) -> None:
    """Check ``model_dir`` against a signature with model-signing's own verifier; raises on any mismatch."""
    from model_signing import verifying

    with tempfile.TemporaryDirectory() as tmp:
        sig, pub = Path(tmp) / "model.sig", Path(tmp) / "key.pub"
        sig.write_text(json.dumps(signature))
        pub.write_text(public_key_pem)
        config = verifying.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_verifier(public_key=pub).verify(model_dir, sig)
