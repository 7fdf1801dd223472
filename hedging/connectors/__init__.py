"""Bookmaker connectors: one interface (``base``), a simulated bookmaker, and a registry."""
