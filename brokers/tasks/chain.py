"""On-chain verification of OTC withdrawals."""
