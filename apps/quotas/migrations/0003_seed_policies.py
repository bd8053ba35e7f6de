"""The seed's default policies (apps/quotas/defaults.py), loaded once; operators change them in the admin."""

from django.db import migrations

from apps.quotas.defaults import SEED, policies_seed


def seed(apps, schema_editor):
    policies_seed(apps.get_model("quotas", "Policy"), using=schema_editor.connection.alias)


def unseed(apps, schema_editor):
    Policy = apps.get_model("quotas", "Policy")
    for scope, plan, *_ in SEED:
        Policy.objects.filter(scope=scope, plan=plan).delete()


class Migration(migrations.Migration):
    dependencies = [("quotas", "0002_policies_and_notifications")]
    operations = [migrations.RunPython(seed, unseed)]
