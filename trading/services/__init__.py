"""Writes and side effects of the MM engine, one module per area (clients, controls, orders, ...)."""
