"""Helpers the backups app's data migrations share (kept here, plain functions of the historical apps)."""

from __future__ import annotations


def groups_grant(apps, schema_editor, grants: dict[str, list[str]]) -> None:
    """Give each group (made if missing) these permissions of the backups app.

    Permissions are made after all migrations (post_migrate); this makes the app's now, to grant
    them. Every query goes to the database being migrated (`migrate_to_postgres` migrates a target
    while the default database is the embedded one, which must stay untouched)."""
    from django.contrib.auth.management import create_permissions

    db = schema_editor.connection.alias
    config = apps.get_app_config("backups")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0, using=db)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in grants.items():
        group, _ = Group.objects.using(db).get_or_create(name=role)
        group.permissions.add(*Permission.objects.using(db).filter(content_type__app_label="backups", codename__in=codenames))
