"""Event types become data: the EventType table, the checkout's two events registered in it
(with the sample the admin used to hard-code and a schema of the payload the checkout
writes), and the support group's view permission on it."""

import django.core.validators
from django.db import migrations, models

from notifications.events import ORDER_CONFIRMED, PAYMENT_FAILED, checkout_event_types

# The checkout's two event types as notifications/events.py states them (the values this
# migration wrote when it was first applied): one copy of the payload's schema and sample.
CHECKOUT_EVENT_TYPES = (ORDER_CONFIRMED, PAYMENT_FAILED)


def checkout_event_types_register(apps, schema_editor):
    EventType = apps.get_model("notifications", "EventType")
    for row in checkout_event_types():
        EventType.objects.get_or_create(name=row.pop("name"), defaults=row)
    # The support group (0002) views every model; this one did not exist then.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="notifications", model="eventtype")
    view, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="view_eventtype", defaults={"name": "Can view event type"}
    )
    for group in Group.objects.filter(name="support"):
        group.permissions.add(view)


def checkout_event_types_unregister(apps, schema_editor):
    apps.get_model("notifications", "EventType").objects.filter(name__in=CHECKOUT_EVENT_TYPES).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0003_trigger_dead_state'),
        ('notifications', '0002_support_group'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.CreateModel(
            name='EventType',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=64, unique=True, validators=[django.core.validators.RegexValidator('^[a-z][a-z0-9_]{0,63}$', 'Lower-case letters, digits and underscores, starting with a letter (e.g. shipment_sent).')])),
                ('description', models.TextField(blank=True)),
                ('category', models.CharField(choices=[('transactional', 'Transactional'), ('marketing', 'Marketing')], default='transactional', max_length=16)),
                ('sample_payload', models.JSONField(blank=True, default=dict, help_text='Data templates are previewed and checked with.')),
                ('payload_schema', models.JSONField(blank=True, default=dict, help_text="JSON Schema every event's data must satisfy ({} accepts any object).")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.RunPython(checkout_event_types_register, checkout_event_types_unregister),
    ]
