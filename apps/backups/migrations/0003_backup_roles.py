"""The backup roles as Django groups, with the seed's permissions (docs/backups.md, "Roles")."""

from django.db import migrations

from apps.backups.migration_support import groups_grant

ROLES = {
    "backup_admin": ["backup_create", "backup_delete", "backup_restore", "backup_validate", "backup_view", "backup_manage_schedules",
                     "backup_manage_holds", "backup_read_audit"],
    "backup_operator": ["backup_create", "backup_validate", "backup_view", "backup_manage_schedules"],
    "recovery_specialist": ["backup_restore", "backup_validate", "backup_view"],
    "compliance_officer": ["backup_view", "backup_manage_holds", "backup_read_audit"],
    "read_only": ["backup_view"],
}  # fmt: skip


def create_roles(apps, schema_editor):
    groups_grant(apps, schema_editor, ROLES)


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_server_backups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
