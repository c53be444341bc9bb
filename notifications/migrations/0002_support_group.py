"""The "support" group: view everything in the admin and resend notifications; edit nothing.

It gets the view permission of every model of notifications and checkout plus the custom
`notifications.resend_notification` (checked by the admin's resend actions). It gets no add,
change or delete permission, so vendors, their secrets and templates stay read-only for it.
`support_group_install` is idempotent; tests call it again after a flush empties the tables.
"""

from django.db import migrations

SUPPORT_GROUP = "support"
APPS = ("notifications", "checkout")
RESEND = ("resend_notification", "Can resend notifications")


def support_group_install(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    permissions = []
    for app_label in APPS:
        for model in apps.get_app_config(app_label).get_models():
            opts = model._meta
            content_type, _ = ContentType.objects.get_or_create(app_label=opts.app_label, model=opts.model_name)
            # Created here because Django's own permissions only appear after all migrations ran.
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=f"view_{opts.model_name}",
                defaults={"name": f"Can view {opts.verbose_name_raw}"},
            )
            permissions.append(permission)
    notification_type, _ = ContentType.objects.get_or_create(app_label="notifications", model="notification")
    resend, _ = Permission.objects.get_or_create(
        content_type=notification_type, codename=RESEND[0], defaults={"name": RESEND[1]}
    )
    group.permissions.add(*permissions, resend)


def support_group_remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=SUPPORT_GROUP).delete()
    apps.get_model("auth", "Permission").objects.filter(codename=RESEND[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("checkout", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(support_group_install, support_group_remove)]
