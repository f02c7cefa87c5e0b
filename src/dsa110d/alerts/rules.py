"""The alert rules: pure functions from what the daemon sees (:class:`Facts`) to conditions.

Each condition's fingerprint names the condition, never the daemon that observes it, so two
daemons that see the same trouble claim the same alert (``health`` conditions name the host
of the *service*, read from the shared registry; ``disk-free`` names the host whose disk it
is, because two hosts' ``/data`` are different disks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dsa110d.config import Config
from dsa110d.science.pipeline.flagqa import FLAG_STAGES
from dsa110d.state.alerts import Condition, QueueView
from dsa110d.state.blocks import BlockRecord
from dsa110d.state.registry import RegistryEntry

INCOMPLETE_SETS_LISTED = 10  # set ids named in one alert's details


@dataclass(frozen=True)
class DiskView:
    """Free space under one data root, on this host."""

    path: str
    free_bytes: int
    total_bytes: int

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 1.0


@dataclass(frozen=True)
class Facts:
    """Everything the rules look at, gathered once per evaluation."""

    host: str
    pid: int
    registry: list[RegistryEntry]
    queues: list[QueueView]
    incomplete_sets: list[tuple[str, float]]  # (set id, age in seconds)
    disks: list[DiskView]
    crashes_in_window: int


def evaluate(facts: Facts, config: Config) -> list[Condition]:
    """Every condition that holds now (the candidates notice is the engine's)."""
    return [
        *health_conditions(facts.registry, config),
        *restart_conditions(facts, config),
        *queue_conditions(facts.queues, config),
        *incomplete_set_conditions(facts.incomplete_sets, config),
        *disk_conditions(facts.host, facts.disks, config),
        *calibration_conditions(facts.registry, config),
    ]


FAST_ALERT_SEVERITY = {"pending": "critical", "confirmed": "info", "retracted": "warning"}


def fast_alert_conditions(alerts: list[dict[str, Any]]) -> list[Condition]:
    """One notice per fast alert (a bright new source in one chunk's image: critical) and one
    per verdict of the block's mosaic (confirmed: info; retracted: warning)."""
    found = []
    for alert in alerts:
        where = (
            f"{alert.get('name')} in chunk {alert.get('chunk_id')}, "
            f"{1e3 * float(alert.get('peak_jy') or 0.0):.1f} mJy/beam at "
            f"{float(alert.get('snr') or 0.0):.1f} sigma (dsa110ctl fast-alerts)"
        )
        fid = f"fast-alert:{alert.get('alert_id')}"
        found.append(
            Condition(fid, "fast_alert", "critical", f"NEW SOURCE: {where}", details=alert)
        )
        status = str(alert.get("status"))
        if status in ("confirmed", "retracted"):
            what = f"{status.upper()} by block {alert.get('settled_by')}: {where}"
            found.append(
                Condition(f"{fid}:{status}", f"fast_alert_{status}", FAST_ALERT_SEVERITY[status],
                          what, details=alert)
            )  # fmt: skip
    return found


def flagged_block_conditions(blocks: list[BlockRecord], config: Config) -> list[Condition]:
    """A warning notice for each block run whose flagged fraction passed
    ``flagging.alert_flag_fraction`` (one per block and version: a re-run is news again)."""
    found = []
    for record in blocks:
        qa: dict[str, Any] = next(
            (record.qa[s] for s in FLAG_STAGES if isinstance(record.qa.get(s), dict)), {}
        )
        fraction = qa.get("flag_fraction")
        if not isinstance(fraction, int | float) or fraction <= config.flagging.alert_flag_fraction:
            continue
        bad = qa.get("bad_antennas") or "none"
        found.append(
            Condition(
                f"block_flagged:{record.block_id}:v{record.version}",
                "block_flagged",
                "warning",
                f"block {record.block_id} is {100 * fraction:.0f}% flagged "
                f"({qa.get('status', 'ok')}; bad antennas: {bad})",
                details={
                    "block_id": record.block_id,
                    "version": record.version,
                    "flag_fraction": fraction,
                    "bad_antennas": bad,
                    "status": qa.get("status", "ok"),
                },
            )
        )
    return found


def health_conditions(entries: list[RegistryEntry], config: Config) -> list[Condition]:
    """UNHEALTHY for longer than ``unhealthy_for_sec``, DEGRADED for ``degraded_for_min``."""
    cfg = config.alerts
    found = []
    for e in entries:
        where = f"{e.service} on {e.host}"
        if e.health == "UNHEALTHY":
            found.append(
                Condition(
                    f"unhealthy:{e.host}:{e.service}",
                    "service_unhealthy",
                    "critical",
                    f"{where} is UNHEALTHY: {e.reason}",
                    cfg.unhealthy_for_sec,
                    {"host": e.host, "pid": e.pid, "service": e.service, "reason": e.reason},
                )
            )
        elif e.health == "DEGRADED" and e.state != "paused":  # an operator's pause is no fault
            found.append(
                Condition(
                    f"degraded:{e.host}:{e.service}",
                    "service_degraded",
                    "warning",
                    f"{where} is DEGRADED: {e.reason}",
                    cfg.degraded_for_min * 60,
                    {"host": e.host, "pid": e.pid, "service": e.service, "reason": e.reason},
                )
            )
    return found


def restart_threshold(config: Config) -> int:
    """Crashes in the window at which the restart intensity counts as nearly exhausted."""
    limit = config.supervisor.max_restarts
    return max(1, math.ceil(config.alerts.restart_intensity_fraction * limit))


def restart_conditions(facts: Facts, config: Config) -> list[Condition]:
    sup = config.supervisor
    if facts.crashes_in_window < restart_threshold(config):
        return []
    return [
        Condition(
            f"restart-intensity:{facts.host}:{facts.pid}",
            "restart_intensity",
            "critical",
            f"dsa110d on {facts.host} (pid {facts.pid}): {facts.crashes_in_window} service "
            f"crashes in {sup.window_sec:g} s; it exits after {sup.max_restarts}",
            0.0,
            {"host": facts.host, "pid": facts.pid, "crashes": facts.crashes_in_window},
        )
    ]


def queue_conditions(queues: list[QueueView], config: Config) -> list[Condition]:
    """Dead letters added within the window; work waiting longer than ``queue_lag_sec``."""
    cfg = config.alerts
    found = []
    for q in queues:
        if (
            q.newest_dead_age_sec is not None
            and q.newest_dead_age_sec < cfg.dead_letters_window_sec
        ):
            found.append(
                Condition(
                    f"dead-letters:{q.stream}",
                    "dead_letters_growing",
                    "warning",
                    f"{q.stream}:dead holds {q.dead_letters} dead letters, the newest "
                    f"{q.newest_dead_age_sec:.0f} s old (dsa110ctl dlq)",
                    0.0,
                    {"stream": q.stream, "dead_letters": q.dead_letters},
                )
            )
        if q.oldest_wait_sec is not None and q.oldest_wait_sec > cfg.queue_lag_sec:
            found.append(
                Condition(
                    f"queue-lag:{q.stream}",
                    "queue_lag",
                    "warning",
                    f"{q.stream}: the oldest waiting work is {q.oldest_wait_sec:.0f} s old "
                    f"(threshold {cfg.queue_lag_sec:g} s)",
                    0.0,
                    {"stream": q.stream, "oldest_wait_sec": round(q.oldest_wait_sec, 1)},
                )
            )
    return found


def incomplete_set_conditions(sets: list[tuple[str, float]], config: Config) -> list[Condition]:
    """One alert for all sets still incomplete past the watcher's processing timeout."""
    if not sets:
        return []
    oldest_id, oldest_age = max(sets, key=lambda s: s[1])
    timeout = config.services.hdf5_watcher.processing_timeout_sec
    return [
        Condition(
            "incomplete-sets",
            "incomplete_set",
            "warning",
            f"{len(sets)} sets still incomplete after {timeout:g} s; the oldest, {oldest_id}, "
            f"for {oldest_age:.0f} s",
            0.0,
            {"sets": [s for s, _ in sets[:INCOMPLETE_SETS_LISTED]], "count": len(sets)},
        )
    ]


def disk_conditions(host: str, disks: list[DiskView], config: Config) -> list[Condition]:
    minimum = config.alerts.disk_free_min_fraction
    return [
        Condition(
            f"disk-free:{host}:{d.path}",
            "disk_free_low",
            "critical",
            f"{d.path} on {host}: {d.free_fraction:.1%} free "
            f"({d.free_bytes / 1e9:.1f} GB; threshold {minimum:.0%})",
            0.0,
            {"host": host, "path": d.path, "free_bytes": d.free_bytes},
        )
        for d in disks
        if d.free_fraction < minimum
    ]


def calibration_conditions(entries: list[RegistryEntry], config: Config) -> list[Condition]:
    """From the calibration summary a processor reports (``metrics.calibration``; the
    registry is shared, so the first processor reporting one speaks for all): no valid
    bandpass covers the newest calibrated block; the newest gain solution fails its QA. Both
    hold for ``degraded_for_min`` first (a poor solution between two good ones is no fault)."""
    cal = next(
        (e.metrics.get("calibration") for e in entries if e.metrics.get("calibration")), None
    )
    if not isinstance(cal, dict):
        return []
    hold = config.alerts.degraded_for_min * 60
    found = []
    if cal.get("bandpass_valid") is False:
        age = cal.get("bandpass_age_sec")
        since = f" ({age / 86400:.1f} days of data since the last)" if age is not None else ""
        found.append(
            Condition(
                "calibration:no-valid-bandpass",
                "no_valid_bandpass",
                "warning",
                f"no valid bandpass covers the newest calibrated data{since}; its chunks are "
                "uncalibrated (dsa110ctl cal list --kind bandpass)",
                hold,
                {"bandpass_id": cal.get("bandpass_id"), "bandpass_age_sec": age},
            )
        )
    if cal.get("gains_qa_ok") is False:
        cfg = config.calibration
        found.append(
            Condition(
                "calibration:gain-qa",
                "gain_qa_degraded",
                "warning",
                f"the newest gain solution {cal.get('gains_id')} fails QA: "
                f"{cal.get('gains_status')}, amplitude scatter {cal.get('gains_amp_scatter')} "
                f"(max {cfg.gain_amp_scatter_max:g}), phase scatter "
                f"{cal.get('gains_phase_scatter_deg')} deg "
                f"(max {cfg.gain_phase_scatter_max_deg:g})",
                hold,
                {k: cal.get(k) for k in ("gains_id", "gains_status", "gains_amp_scatter",
                                         "gains_phase_scatter_deg")},
            )
        )  # fmt: skip
    return found
