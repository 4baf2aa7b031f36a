"""Keys, certificates, electronic seals and signatures (issue 4).

Modules: ``algorithms`` (ES256, EdDSA, and SM2 from ``gm`` when the extra is
installed), ``keystore`` (KeyStore, FileKeyStore), ``pki`` (CAs per level,
department certificates, CRLs), ``trust`` (TrustBundle, ChainVerifier),
``seal`` and ``seal_image`` (GB/T 38540-style electronic seals and their
picture), ``canonical`` (RFC 8785 JSON, strict base64url), ``jws`` (licence
signing and verification), ``pdf_layout`` + ``pdf`` (licence PDFs, PAdES
signatures made inside the key store), ``pdf_check`` + ``verify`` (one
``verify_document`` for JWS and PDF), ``bundle`` (the offline verifier
bundle), ``deployment`` (the node's PKI and seals on disk: the facade the CLI
and the licence vault use; ``deployment_ops``, ``deployment_state``), ``sub_ca``
+ ``deployment_ca`` (a child node's CA under the one deployment root, through a
CSR), ``errors`` (VerificationError, KeyStoreError).
"""

from signing import gm as _gm  # noqa: F401 - registers SM2 when the gm extra is installed
