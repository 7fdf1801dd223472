"""The console of webhook deliveries and their attempts."""
