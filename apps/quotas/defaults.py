"""The default rate-limit policies (the issue's table; docs/quotas.md), as plain data.

Loaded by migration 0003 and again after every `migrate` or `flush` (apps.py's post_migrate
handler), only where a (scope, plan) has no row: an operator's edits are never overwritten, and
a deleted row comes back with its default (to lift a limit, make it unlimited instead).
"""

# scope, plan, subject, limit (None: unlimited), window, fail mode, description
SEED = [
    ("pairing.generate", "free", "device", 10, "hour", "closed", "POST /api/v1/pairing/generate"),
    ("pairing.generate", "paid", "device", 10, "hour", "closed", "POST /api/v1/pairing/generate"),
    ("pairing.verify", "free", "ip", 30, "10min", "closed", "POST /api/v1/pairing/verify: code guesses per address"),
    ("relay.connect", "free", "device", 5, "10min", "open", "WebSocket connect to /ws/relay/{book_id}"),
    ("relay.connect", "paid", "device", 5, "10min", "open", "WebSocket connect to /ws/relay/{book_id}"),
    ("photos.upload", "free", "book", 100, "day", "closed", "POST /api/v1/photos/upload"),
    ("photos.upload", "paid", "book", 1000, "day", "closed", "POST /api/v1/photos/upload"),
    ("photos.download", "free", "book", 500, "day", "open", "GET /api/v1/photos/{id}"),
    ("photos.download", "paid", "book", None, "day", "open", "GET /api/v1/photos/{id}"),
    ("relay.send", "free", "book", 1000, "day", "open", "POST /api/v1/relay/send"),
    ("relay.send", "paid", "book", 10000, "day", "open", "POST /api/v1/relay/send"),
    ("backup.deposit", "free", "device", 200, "day", "closed", "POST /api/v1/backup/shares"),
    ("backup.request", "free", "device", 120, "10min", "closed", "POST /api/v1/backup/delivery/request"),
    # API keys: a key's own rpm/daily/monthly, when set, replaces these limits.
    ("api_key.minute", "service", "api_key", None, "minute", "closed", "Requests per minute of an API key"),
    ("api_key.day", "service", "api_key", None, "day", "closed", "Requests per day of an API key"),
    ("api_key.month", "service", "api_key", None, "month", "closed", "Requests per month of an API key"),
]


def policies_seed(policy_model, using: str = "default") -> int:
    """Create the missing default rows; returns how many were made."""
    made = 0
    for scope, plan, subject, limit, window, fail_mode, description in SEED:
        _, created = policy_model.objects.using(using).get_or_create(
            scope=scope, plan=plan,
            defaults={"subject": subject, "limit": limit, "window": window, "fail_mode": fail_mode, "description": description},
        )  # fmt: skip
        made += created
    return made
