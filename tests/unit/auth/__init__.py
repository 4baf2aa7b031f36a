"""Unit tests of zhida.auth: keys, verifier, policy, minting, the token CLI."""
