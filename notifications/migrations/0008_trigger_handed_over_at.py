from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0007_delivery_receipts'),
    ]

    operations = [
        migrations.AddField(
            model_name='notificationtrigger',
            name='handed_over_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
