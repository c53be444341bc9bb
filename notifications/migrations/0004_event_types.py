"""Event types become data: the EventType table, the checkout's two events registered in it
(with the sample the admin used to hard-code and a schema of the payload the checkout
writes), and the support group's view permission on it."""

import django.core.validators
from django.db import migrations, models

_LINES = [
    {"sku": "MUG-01", "name": "Beacon mug", "quantity": 2, "unit_price": "12.50", "line_total": "25.00"},
    {"sku": "TEE-M", "name": "T-shirt (M)", "quantity": 1, "unit_price": "22.30", "line_total": "22.30"},
]
_ORDER_SAMPLE = {
    "order_id": "3f2b8c1e-5d4a-4b7e-9c61-0a1b2c3d4e5f",
    "order_ref": "3F2B8C1E",
    "status": "paid",
    "customer_name": "Ana Silva",
    "currency": "EUR",
    "total": "47.30",
    "payment_error_code": "",
    "lines": _LINES,
}
# What checkout.services writes: the fields templates rely on are required, others allowed.
_ORDER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["order_ref", "customer_name", "currency", "total", "lines"],
    "properties": {
        "order_id": {"type": "string"},
        "order_ref": {"type": "string"},
        "status": {"type": "string"},
        "customer_name": {"type": "string"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "total": {"type": "string"},
        "payment_error_code": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "quantity"],
                "properties": {
                    "sku": {"type": "string"},
                    "name": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "string"},
                    "line_total": {"type": "string"},
                },
            },
        },
    },
}
CHECKOUT_EVENT_TYPES = {
    "order_confirmed": ("A paid checkout: the order confirmation.", _ORDER_SAMPLE),
    "payment_failed": (
        "A declined payment at checkout.",
        {**_ORDER_SAMPLE, "status": "payment_failed", "payment_error_code": "card_declined"},
    ),
}


def checkout_event_types_register(apps, schema_editor):
    EventType = apps.get_model("notifications", "EventType")
    for name, (description, sample) in CHECKOUT_EVENT_TYPES.items():
        EventType.objects.get_or_create(
            name=name,
            defaults={"description": description, "category": "transactional", "sample_payload": sample, "payload_schema": _ORDER_SCHEMA},
        )
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
