"""Webhook delivery: On-Prem payload builders and the outbox dispatcher."""

from coreapp.webhooks.dispatcher import DispatcherStats, SslContextProvider, WebhookDispatcher

__all__ = ["DispatcherStats", "SslContextProvider", "WebhookDispatcher"]
