"""Keys, certificates, electronic seals and signatures (issue 4).

Modules: ``algorithms`` (ES256, EdDSA; a registry for SM2 later), ``keystore``
(KeyStore, FileKeyStore), ``pki`` (CAs per level, department certificates,
CRLs), ``trust`` (TrustBundle, ChainVerifier), ``seal`` and ``seal_image``
(GB/T 38540-style electronic seals and their picture), ``canonical``
(RFC 8785 JSON, strict base64url), ``jws`` (licence signing and verification),
``errors`` (VerificationError, KeyStoreError).
"""
