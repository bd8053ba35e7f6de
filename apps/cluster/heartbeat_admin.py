"""The cluster page of the admin (/admin/cluster/nodes/): live nodes from their heartbeats, and totals."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from django.conf import settings
from django.contrib import admin
from django.template.response import TemplateResponse

from apps.cluster.heartbeat import nodes_live


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def cluster_nodes_view(request):
    now = time.time()
    nodes = nodes_live(now=now)
    rows = [
        {
            "node": node, "started": _at(node.started_at), "seen": _at(node.seen_at),
            "seen_ago": round(now - node.seen_at, 1), "uptime": round(now - node.started_at),
        }
        for node in nodes
    ]  # fmt: skip
    totals = {
        "nodes": len(nodes),
        "processes": sum(node.processes for node in nodes),
        "sockets": sum(node.sockets for node in nodes),
        "requests_per_second": round(sum(node.requests_per_second for node in nodes), 2),
        "signers_down": sum(node.signer != "up" and node.signer != "none" for node in nodes),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Cluster: live nodes",
        "rows": rows,
        "totals": totals,
        "interval": settings.HEARTBEAT_INTERVAL_SECONDS,
        "ttl": settings.HEARTBEAT_TTL_SECONDS,
    }
    return TemplateResponse(request, "cluster/heartbeats.html", context)
