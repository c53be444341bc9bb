"""Celery tasks: thin. Each takes ids, calls one service, and owns its retry schedule."""

from __future__ import annotations

from celery import Task, shared_task

from notifications import delivery_fallback, dispatch, lifecycle, outbox, retention, sending, sweeper


@shared_task(name="notifications.tasks.trigger_dispatch")
def trigger_dispatch(trigger_id: int) -> None:
    dispatch.trigger_dispatch(trigger_id=trigger_id)


def _send(task: Task, notification_id: int, channel: str) -> str:
    outcome = sending.notification_send(notification_id=notification_id, channel=channel)
    countdown = lifecycle.retry_countdown(outcome)
    if countdown is not None:
        raise task.retry(countdown=countdown, max_retries=None)
    return outcome.status


@shared_task(bind=True, name="notifications.tasks.notification_send_email")
def notification_send_email(self: Task, notification_id: int) -> str:
    return _send(self, notification_id, "email")


@shared_task(bind=True, name="notifications.tasks.notification_send_sms")
def notification_send_sms(self: Task, notification_id: int) -> str:
    return _send(self, notification_id, "sms")


@shared_task(name="notifications.tasks.outbox_relay")
def outbox_relay() -> int:
    return outbox.outbox_relay()


@shared_task(name="notifications.tasks.notifications_sweep")
def notifications_sweep() -> int:
    return sweeper.notifications_sweep()


@shared_task(name="notifications.tasks.personal_data_expire")
def personal_data_expire() -> int:
    return retention.personal_data_expire().notifications


@shared_task(name="notifications.tasks.delivery_fallback_send")
def delivery_fallback_send(attempt_id: int) -> str:
    return delivery_fallback.delivery_fallback_send(attempt_id=attempt_id)


@shared_task(name="notifications.tasks.delivery_fallbacks_sweep")
def delivery_fallbacks_sweep() -> int:
    return delivery_fallback.delivery_fallbacks_sweep()
