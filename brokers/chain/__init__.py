"""On-chain verification of OTC withdrawals (docs/chain-verification.md).

- ``matcher``: pure rules over decoded ERC-20 Transfer logs
- ``reader``: the chain through web3.py over JSON-RPC (block times, ``eth_getLogs``)
- ``verify``: the service the Celery task calls: match -> ``withdrawal_broker_complete``; timeout ->
  ``withdrawal_lock_expire``
- ``devnet``: a local EVM (eth-tester + py-evm) served over JSON-RPC on loopback, for tests and laptops
"""
