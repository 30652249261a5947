"""The cluster's service-account signing key: kube-apiserver's --service-account-signing-key-file.

One ECDSA P-256 key (JWS ES256), generated the first time the API server starts in a state dir
and kept there as a PEM file readable only by its owner (0600), so tokens stay valid across
restarts. The key id (`kid` header) is the unpadded base64url SHA-256 of the public key's DER
encoding, as kube-apiserver computes it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SigningKey"]

ALGORITHM = "ES256"


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    @property
    def kid(self) -> str:
        der = self.public.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in `path`, made (0600) if the file does not exist yet."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: the service-account signing key must be an ECDSA "
                                 "key; remove the file and restart 'knet control' to make one "
                                 "(every issued service-account token becomes invalid)")
            return cls(key)
        made = cls.generate()
        pem = made.private.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
        return made
