"""Outgoing webhooks' network side (PROTOCOL.md 9): which URLs may be reached (guard) and the
HTTP POST that reaches them (client). The delivery rules live in chat.services.deliveries."""
