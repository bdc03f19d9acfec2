"""Notifications: apprise channels, messages with a chart, and a durable outbox with retries."""
