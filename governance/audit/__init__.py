"""Tamper-evident audit log: RFC 6962 Merkle tree, signed checkpoints, proofs, erasure, offline verifier.

merkle.py      pure tree hashing, proof plans, proof verification (RFC 6962 / 9162)
canonical.py   canonical JSON and the versioned entry format
checkpoint.py  C2SP checkpoints in Ed25519-signed notes; the signing key file
verify.py      offline verification of an export
models.py      the tables; log.py appends, erases, proves and exports on the database
keys.py        origin and signing key from Settings (`commons audit` is governance/cli/audit.py)
"""
