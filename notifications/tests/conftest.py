"""Fixtures of the notifications app's own tests. The delivery engine's fixtures shared with
other folders (vendors, templates, workers) are in notifications/tests/fixtures.py."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from notifications.tests.factories import support_group


@pytest.fixture
def support_client(db) -> Client:
    """The admin as a staff user of the support group sees it."""
    user = User.objects.create_user("sam", password="pw", is_staff=True)
    user.groups.add(support_group())
    client = Client()
    client.force_login(user)
    return client
