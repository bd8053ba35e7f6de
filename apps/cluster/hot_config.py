"""Hot configuration on each node: the RuntimeConfig row and the feature switches, applied in place.

Every process that serves requests starts one daemon thread (`hot_config_start`, from the
maintenance middleware's construction) that

- reads the row at start, so a node that was down during a change applies it when it comes up;
- re-reads it at once when the broadcast (homepocket/redis_clients.py) says `config.changed`;
- polls it every HOT_CONFIG_POLL_SECONDS while the broadcast is not heard (Redis down) and in
  the embedded mode (a `manage.py hotconfig` runs in another process), and every
  HOT_CONFIG_SAFETY_SECONDS anyway.

Only this thread reads the database here: request paths read the applied snapshot, a plain
attribute, at no cost. Applying is idempotent and keyed by the row's `version`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from homepocket.redis_clients import broadcast
from homepocket.shutdown import on_shutdown

logger = logging.getLogger("homepocket.cluster")

TOPIC = "config.changed"


@dataclass(frozen=True)
class HotConfig:
    version: int = -1  # -1: nothing read yet (the defaults below apply)
    log_level: str = ""
    maintenance: bool = False
    maintenance_message: str = ""
    maintenance_retry_after: int = 300
    switches: dict[str, bool] = field(default_factory=dict)


_applied = HotConfig()
_wake = threading.Event()
_stop = threading.Event()
_thread: threading.Thread | None = None
_start_lock = threading.Lock()
_stop_hooked = False


def hot_config() -> HotConfig:
    """The configuration this node applies now."""
    return _applied


def switch_enabled(name: str, default: bool = False) -> bool:
    """Whether a feature switch is on on this node (`default` for a switch with no row)."""
    return _applied.switches.get(name, default)


def hot_config_read() -> HotConfig:
    """The row and the switches as the database holds them now."""
    from apps.cluster.models import FeatureSwitch, RuntimeConfig

    row = RuntimeConfig.objects.filter(pk=1).first() or RuntimeConfig(id=1)
    switches = dict(FeatureSwitch.objects.values_list("name", "enabled"))
    return HotConfig(
        version=row.version, log_level=row.log_level, maintenance=row.maintenance,
        maintenance_message=row.maintenance_message, maintenance_retry_after=row.maintenance_retry_after, switches=switches,
    )  # fmt: skip


def hot_config_refresh() -> HotConfig:
    """Read the database and apply what changed (this thread or the one that saved a change)."""
    return hot_config_apply(hot_config_read())


def hot_config_apply(new: HotConfig) -> HotConfig:
    global _applied
    old = _applied
    if new == old:
        return old
    level = new.log_level or settings.LOG_LEVEL
    logging.getLogger().setLevel(level)
    _applied = new
    changed = sorted(name for name in ("log_level", "maintenance", "switches") if getattr(old, name) != getattr(new, name))
    logger.warning(  # a warning, so that it is logged whatever level was just set
        "hot configuration applied",
        extra={"event": "hot_config_applied", "version": new.version, "changed": changed, "maintenance": new.maintenance, "log_level": level},
    )
    return new


def _heard(data: dict) -> None:
    _wake.set()  # the node's thread re-reads the row now (the database is its job, not the listener's)


broadcast.subscribe(TOPIC, _heard)


def hot_config_start() -> None:
    """Start this process's hot-configuration thread (idempotent; a forked child starts its own)."""
    global _thread
    with _start_lock:
        if _thread is not None and _thread.is_alive() and getattr(_thread, "pid", None) == os.getpid():
            return
        if broadcast.distributed:
            broadcast.start()  # hear announcements from the start, whatever else uses Redis
        global _stop_hooked
        if not _stop_hooked:
            on_shutdown(hot_config_stop)  # no read after the process let go of its database
            _stop_hooked = True
        _stop.clear()
        _thread = threading.Thread(target=_run, name="hot-config", daemon=True)
        _thread.pid = os.getpid()
        _thread.start()


def _due(*, woken: bool, last_read: float, epoch_read: int) -> bool:
    """Read now? When told to, after the broadcast (re)connected (an announcement may have been
    missed), every HOT_CONFIG_POLL_SECONDS while nothing is heard (Redis down, embedded), and
    every HOT_CONFIG_SAFETY_SECONDS anyway. trusted() also starts the broadcast listener."""
    if woken or broadcast.epoch != epoch_read:
        return True
    elapsed = time.monotonic() - last_read
    if not broadcast.distributed or not broadcast.trusted():
        return elapsed >= settings.HOT_CONFIG_POLL_SECONDS
    return elapsed >= settings.HOT_CONFIG_SAFETY_SECONDS


def hot_config_stop() -> None:
    """End this process's hot-configuration thread (a clean stop; the test run, before its database goes)."""
    _stop.set()
    _wake.set()
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(5)


def _run() -> None:
    woken, last_read, epoch_read = True, 0.0, -1
    while not _stop.is_set():
        if _due(woken=woken, last_read=last_read, epoch_read=epoch_read):
            _wake.clear()
            epoch_read, last_read = broadcast.epoch, time.monotonic()
            try:
                hot_config_refresh()
            except Exception as exc:  # the database is down, or not migrated yet: keep what is applied
                logger.warning("hot configuration not read", extra={"event": "hot_config_failed", "error": type(exc).__name__})
            finally:
                # No connection is held between reads. close_old_connections() here would ask a
                # closed connection for its autocommit, which reconnects, and with the database
                # down that raised out of this loop and ended the thread for good.
                try:
                    connection.close()
                except Exception:  # a broken connection: it is gone either way
                    pass
        woken = _wake.wait(1.0) and not _stop.is_set()  # a check costs no query; a read happens only when due
