"""The tamper-evident access log: RFC 6962 Merkle tree, checkpoints, proofs (issue 6)."""
