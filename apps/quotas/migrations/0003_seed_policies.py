"""The seed's default policies (issue table), loaded once; operators change them in the admin."""

from django.db import migrations

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
    # API keys: a key's own rpm/daily/monthly, when set, replaces these limits.
    ("api_key.minute", "service", "api_key", None, "minute", "closed", "Requests per minute of an API key"),
    ("api_key.day", "service", "api_key", None, "day", "closed", "Requests per day of an API key"),
    ("api_key.month", "service", "api_key", None, "month", "closed", "Requests per month of an API key"),
]


def seed(apps, schema_editor):
    Policy = apps.get_model("quotas", "Policy")
    for scope, plan, subject, limit, window, fail_mode, description in SEED:
        Policy.objects.get_or_create(
            scope=scope, plan=plan,
            defaults={"subject": subject, "limit": limit, "window": window, "fail_mode": fail_mode, "description": description},
        )  # fmt: skip


def unseed(apps, schema_editor):
    Policy = apps.get_model("quotas", "Policy")
    for scope, plan, *_ in SEED:
        Policy.objects.filter(scope=scope, plan=plan).delete()


class Migration(migrations.Migration):
    dependencies = [("quotas", "0002_policies_and_notifications")]
    operations = [migrations.RunPython(seed, unseed)]
