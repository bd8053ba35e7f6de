"""The backup roles as Django groups, with the seed's permissions (docs/backups.md, "Roles")."""

from django.db import migrations

ROLES = {
    "backup_admin": ["backup_create", "backup_delete", "backup_restore", "backup_validate", "backup_view", "backup_manage_schedules",
                     "backup_manage_holds", "backup_read_audit"],
    "backup_operator": ["backup_create", "backup_validate", "backup_view", "backup_manage_schedules"],
    "recovery_specialist": ["backup_restore", "backup_validate", "backup_view"],
    "compliance_officer": ["backup_view", "backup_manage_holds", "backup_read_audit"],
    "read_only": ["backup_view"],
}  # fmt: skip


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are made after all migrations (post_migrate); make this app's now, to grant them.
    # Every query on the database being migrated (migrate_to_postgres migrates a target while the
    # default database is the embedded one, which must stay untouched).
    db = schema_editor.connection.alias
    config = apps.get_app_config("backups")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0, using=db)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLES.items():
        group, _ = Group.objects.using(db).get_or_create(name=role)
        group.permissions.add(*Permission.objects.using(db).filter(content_type__app_label="backups", codename__in=codenames))


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_server_backups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
