"""Read queries of the house exchange (market data, accounts), done in SQL."""
