"""4. Every SMS vendor down longer than the retry budget: dead letters, seen in the admin and
a metric, then delivered by an operator's resend once the vendors are back."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox

RATE, SECONDS = 2.0, 5.0
SMS_VENDORS = ("sms-primary", "sms-fallback")
STAFF_USER, STAFF_PASSWORD = "chaos-operator", "chaos-operator-Pa55!word"
_SAMPLE = re.compile(r'^beacon_notifications_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$', re.M)


def dead_metric(chaos: Chaos) -> float:
    """beacon_notifications_total{channel="sms",status="dead"} summed over both workers' exporters."""
    total = 0.0
    for port in chaos.stack.worker_metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        for match in _SAMPLE.finditer(text):
            labels = match["labels"]
            if 'status="dead"' in labels and 'channel="sms"' in labels:
                total += float(match["value"])
    return total


def dead_gauge(chaos: Chaos) -> float:
    """The web's scrape-time gauge of dead letters (loopback is an allowed metrics network)."""
    with urllib.request.urlopen(f"{chaos.stack.base_url}/metrics", timeout=10) as response:  # noqa: S310
        match = re.search(r"^beacon_notifications_dead\s+(\S+)$", response.read().decode(), re.M)
    return float(match[1]) if match else -1.0


def admin_dead_page(chaos: Chaos) -> str:
    """Log in to the admin as a staff user (the login form, CSRF and all) and list the dead."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=STAFF_USER).exists():
        user_model.objects.create_superuser(STAFF_USER, "ops@shop.example", STAFF_PASSWORD)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = f"{chaos.stack.base_url}/admin/login/?next=/admin/"
    page = opener.open(login_url, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": STAFF_USER, "password": STAFF_PASSWORD, "next": "/admin/"}
    ).encode()
    login = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})  # noqa: S310 - loopback http
    opener.open(login, timeout=10).read()
    url = f"{chaos.stack.base_url}/admin/notifications/notification/?status__exact=dead&channel__exact=sms"
    with opener.open(url, timeout=10) as response:
        if "/admin/login/" in response.geturl():
            raise RuntimeError("admin login failed")
        return response.read().decode()


def run(chaos: Chaos) -> ScenarioResult:
    from notifications.models import Notification
    from notifications.operations import notifications_resend

    result = ScenarioResult(4, "all SMS vendors down > retry budget")
    sandbox = chaos.stack.sandbox
    metric_before = dead_metric(chaos)
    for name in SMS_VENDORS:
        sandbox.set_faults(name, outage=True)
    try:
        results = chaos.load("dead", rate=RATE, seconds=SECONDS).join()
        result.record_load(results)
        recipients = committed(all_recipients(results))
        phones = [r.phone for r in recipients]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            dead = Notification.objects.filter(channel="sms", recipient__in=phones, status="dead").count()
            if dead == len(phones):
                break
            time.sleep(0.5)
        dead_ids = list(Notification.objects.filter(channel="sms", recipient__in=phones, status="dead").values_list("pk", flat=True))
        result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")
        result.check("every SMS ended dead after the retry budget", len(dead_ids) == len(phones) > 0, f"{len(dead_ids)}/{len(phones)} dead")
        email = chaos.wait_delivered(recipients, timeout=60, channels=("email",))
        result.check("the emails of the same checkouts were delivered", not email.missing, f"{email.delivered}/{email.expected}")
        page = admin_dead_page(chaos)
        shown = sum(1 for pk in dead_ids if f"/admin/notifications/notification/{pk}/change/" in page)
        result.check("the dead letters are listed in the admin (status = dead filter, as staff)", shown == len(dead_ids),
                     f"{shown}/{len(dead_ids)} listed")
        metric_after = dead_metric(chaos)
        result.check('worker metric beacon_notifications_total{channel="sms",status="dead"} counted them',
                     metric_after - metric_before >= len(dead_ids), f"+{metric_after - metric_before:.0f}")
        gauge = dead_gauge(chaos)
        result.check("web metric beacon_notifications_dead shows them", gauge >= len(dead_ids), f"{gauge:.0f}")
    finally:
        for name in SMS_VENDORS:
            sandbox.clear_faults(name)
    resent = notifications_resend(notification_ids=dead_ids, requested_by="chaos")
    result.check("an operator's resend after recovery queued them all", resent == len(dead_ids), f"{resent} resent")
    count = chaos.wait_delivered(recipients, timeout=90)
    record_inbox(result, count)
    still = Notification.objects.filter(pk__in=dead_ids).exclude(status="sent").count()
    result.check("the resent notifications are sent", still == 0, f"{still} not sent")
    return result
