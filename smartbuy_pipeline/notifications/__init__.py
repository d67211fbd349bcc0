"""Notification channels: webhook, e-mail, Apprise, Web Push (`channels`), and `inbox.LocalInbox`,
the local receivers used by tests, `make demo` and the dispatch benchmark."""

from smartbuy_pipeline.notifications.channels import (
    ChannelSettings,
    Delivery,
    DeliveryResult,
    Outcome,
    deliver_all,
)

__all__ = ["ChannelSettings", "Delivery", "DeliveryResult", "Outcome", "deliver_all"]
