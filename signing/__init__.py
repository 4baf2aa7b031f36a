"""Keys, certificates, electronic seals and signatures (issue 4)."""
