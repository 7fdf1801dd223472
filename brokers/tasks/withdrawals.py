"""Withdrawal tasks: the cooling period and the platform payout."""
