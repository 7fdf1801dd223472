"""Exchange streams (seed 004 WebSockets): publishing from the matching service, and the consumers."""
