"""Notifications: HMAC-signed pings from the origin and the small HTTP service that
receives them (and serves /metrics and /status)."""
