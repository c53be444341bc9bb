"""The events API (`/api/v1/events/`): other systems ask Beacon to notify about a registered
event type, with the checkout's API clients, keys, Idempotency-Key records and rate limit.

It stands beside both apps: it imports `checkout` (the API's clients and idempotency) and
`notifications` (event types, the outbox), so that `notifications` never imports `checkout`.
"""
