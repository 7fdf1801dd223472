"""The house exchange's REST API (``/api/v1/exchange/``) and its login (``/auth/``). See docs/api/exchange.md."""
