"""Unit tests of the signing package: real keys, certificates and signatures."""
