from django.db import migrations


def create_head(apps, schema_editor):
    # The head row exists before the first append, so two first writers lock it instead of
    # racing to create it.
    apps.get_model("audit", "AuditChainHead").objects.get_or_create(pk=1, defaults={"last_hash": "0" * 64})


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
