"""Typed keys for what the composition root puts on the application and each request (DESIGN §11.8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from shared.bus.base import Bus
from shared.config import WebSettings
from shared.netguard import AddressPolicy

if TYPE_CHECKING:
    from webapp.auth import Authenticator, Principal
    from webapp.cluster import ClusterView
    from webapp.disk import WebDiskGuard
    from webapp.metrics import WebMetrics

VERSION_KEY = web.AppKey("openprem.version", str)
"""The client version reported in every ``meta``."""
WEB_SETTINGS_KEY = web.AppKey("openprem.web_settings", WebSettings)
TARGETS_KEY = web.AppKey("openprem.targets", AddressPolicy)
"""Where coreapp may send requests a client names (``WA_FETCH_ALLOW``): webhook URLs are checked against it too."""
BUS_KEY = web.AppKey("openprem.bus", Bus)
RPC_TIMEOUT_KEY = web.AppKey("openprem.rpc_timeout_s", float)
AUTH_KEY: web.AppKey[Authenticator] = web.AppKey("openprem.auth")
METRICS_KEY: web.AppKey[WebMetrics] = web.AppKey("openprem.metrics")
DISK_KEY: web.AppKey[WebDiskGuard] = web.AppKey("openprem.disk")
CLUSTER_KEY: web.AppKey[ClusterView] = web.AppKey("openprem.cluster")
"""Multiconnect only: where each call goes (``webapp.cluster``)."""

PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("openprem.principal")
REQUEST_ID_KEY = web.RequestKey("openprem.request_id", str)
