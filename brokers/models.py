"""Brokerage models arrive with the brokerage issue."""
