"""The suppression list (consent.py), the `suppressed` notification status, and the support
group's view (only) of the list."""

from django.db import migrations, models


def support_views_suppressions(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="notifications", model="suppression")
    view, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="view_suppression", defaults={"name": "Can view suppression"}
    )
    for group in apps.get_model("auth", "Group").objects.filter(name="support"):
        group.permissions.add(view)


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0004_event_types'),
    ]

    operations = [
        migrations.AlterField(
            model_name='notification',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('sent', 'Sent'), ('retrying', 'Retrying'), ('failed', 'Failed'), ('dead', 'Dead'), ('suppressed', 'Suppressed')], default='pending', max_length=10),
        ),
        migrations.CreateModel(
            name='Suppression',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('channel', models.CharField(choices=[('email', 'Email'), ('sms', 'SMS')], max_length=8)),
                ('address', models.CharField(blank=True, help_text='Empty once erased; the hash still matches.', max_length=254)),
                ('address_hash', models.CharField(editable=False, max_length=64)),
                ('scope', models.CharField(choices=[('all', 'Every message on this channel'), ('marketing', 'Marketing messages only')], default='all', max_length=16)),
                ('source', models.CharField(choices=[('sms_stop', 'SMS STOP'), ('unsubscribe', 'One-click unsubscribe'), ('hard_bounce', 'Hard bounce'), ('carrier_opt_out', 'Twilio 21610 (unsubscribed)'), ('operator', 'Operator')], default='operator', max_length=16)),
                ('note', models.CharField(blank=True, max_length=200)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['-created_at'],
                'constraints': [models.UniqueConstraint(fields=('channel', 'address_hash', 'scope'), name='suppression_unique_per_scope')],
            },
        ),
        migrations.RunPython(support_views_suppressions, migrations.RunPython.noop),
    ]
