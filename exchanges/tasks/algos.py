"""Tasks of TWAP, scale orders and the dead-man's switch."""
