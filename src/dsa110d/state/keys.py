"""Every Redis key and stream name of dsa110d, built in one place.

No other module spells a key. All keys live under one namespace prefix (default
``dsa110``) so several pipelines can share one server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace."""

    namespace: str = "dsa110"

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # streams -----------------------------------------------------------------
    def stream(self, message_type: str) -> str:
        """The stream of one message type, e.g. ``dsa110:hdf5_processing``."""
        return self._key(message_type.lower())

    def dead_letters(self, message_type: str) -> str:
        """The dead-letter stream beside a message type's stream."""
        return self._key(message_type.lower(), "dead")

    def consumer_heartbeat(self, stream: str, consumer: str) -> str:
        return f"{stream}:hb:{consumer}"

    def dedup(self, stream: str, dedup_key: str) -> str:
        return f"{stream}:dedup:{dedup_key}"

    def attempts(self, stream: str) -> str:
        """Hash of entry id -> JSON list of failed attempts."""
        return f"{stream}:attempts"

    # replication -------------------------------------------------------------
    def replication_barrier(self) -> str:
        """A counter bumped before WAIT: its replication marks every earlier write."""
        return self._key("replication", "barrier")

    # leases ------------------------------------------------------------------
    def lease(self, name: str) -> str:
        return self._key("lease", name)

    def fence(self, name: str) -> str:
        """The newest fencing token issued for one lease."""
        return self._key("fence", name)

    def fence_tokens(self) -> str:
        """The namespace's one fencing-token counter: every lease's tokens come from it, so a
        token is never issued twice, even for a lease whose keys housekeeping removed."""
        return self._key("fence-tokens")

    def committed_token(self, name: str) -> str:
        """The highest fencing token that has committed for one lease."""
        return self._key("committed", name)

    def fencing_keys(self, name: str) -> tuple[str, str]:
        """The keys one lease leaves behind for good: its fence counter and commit mark
        (housekeeping removes them with the record the lease guarded)."""
        return self.fence(name), self.committed_token(name)

    @staticmethod
    def set_lease(set_id: str) -> str:
        """The name of the lease that guards one set's conversion."""
        return f"set:{set_id}"

    @staticmethod
    def fast_search_lease(chunk_id: str) -> str:
        """The name of the lease that guards one chunk's fast-alert search and its record."""
        return f"fast:{chunk_id}"

    @staticmethod
    def block_lease(block_id: str) -> str:
        """The name of the lease that guards one block's runs."""
        return f"block:{block_id}"

    # registry ----------------------------------------------------------------
    def registry_entry(self, host: str, pid: int, service: str) -> str:
        return self._key("registry", host, str(pid), service)

    def registry_pattern(self) -> str:
        return self._key("registry", "*")

    def metrics(self, host: str, pid: int, service: str) -> str:
        return self._key("metrics", host, str(pid), service)

    # records -----------------------------------------------------------------
    def probe_cache(self, host: str) -> str:
        """Hash of watched path -> JSON {size, mtime_ns, inode, outcome}: one host's watcher
        probe outcomes (paths and inodes are the host's), so a restart does not probe a file
        it already knows."""
        return self._key("probes", host)

    def set_record(self, set_id: str) -> str:
        return self._key("set", set_id)

    def set_index(self) -> str:
        """Sorted set of every set id, scored by when it was first seen (Unix seconds)."""
        return self._key("sets")

    def set_name_times(self) -> str:
        """Sorted set of set ids scored by their earliest file-name time (Unix seconds)."""
        return self._key("sets", "by-name-time")

    def set_open(self) -> str:
        """Sorted set of sets not yet announced (scored by first seen, Unix seconds)."""
        return self._key("sets", "open")

    def set_moves(self) -> str:
        """List of converted set ids whose input files the watcher may move (post_handle)."""
        return self._key("sets", "moves")

    def chunk_record(self, chunk_id: str) -> str:
        return self._key("chunk", chunk_id)

    def chunk_index(self) -> str:
        """Sorted set of every chunk id, scored by the chunk's start (Unix seconds)."""
        return self._key("chunks")

    def block_record(self, block_id: str) -> str:
        return self._key("block", block_id)

    def block_index(self) -> str:
        """Sorted set of every block id, scored by the block's start (Unix seconds)."""
        return self._key("blocks")

    def block_pending(self) -> str:
        """Sorted set of blocks with chunks not yet processed, scored by the block's end."""
        return self._key("blocks", "pending")

    def candidates(self) -> str:
        """Hash of source id -> JSON candidate record of the newest analysis run."""
        return self._key("candidates")

    def candidates_run(self) -> str:
        """JSON summary of the run the candidates hash came from."""
        return self._key("candidates", "run")

    def monitored(self) -> str:
        """Hash of new-source candidate id -> JSON record: the sources the blind search found
        that forced photometry measures in every later block (and the earlier ones re-run)."""
        return self._key("monitored")

    def monitoring_pending(self) -> str:
        """Hash of block id -> the published candidates table of its last run whose new
        sources are not yet all registered: written with the block's commit (fenced), removed
        once :class:`~dsa110d.state.monitored.MonitoredSources` registered them."""
        return self._key("monitored", "pending")

    # variability analysis ------------------------------------------------------
    def analysis_pending(self) -> str:
        """Set of block ids announced since the last analysis run took them."""
        return self._key("analysis", "pending")

    def analysis_times(self) -> str:
        """Hash: first and last time a block was noted while runs were pending."""
        return self._key("analysis", "times")

    def analysis_full(self) -> str:
        """Present when a full recompute has been asked for."""
        return self._key("analysis", "full")

    def analysis_last_run(self) -> str:
        """JSON record of the last analysis run (any host): when, status, summary."""
        return self._key("analysis", "last_run")

    def control(self) -> str:
        return self._key("control")

    def alerts(self) -> str:
        """The stream of alert events (fire, repeat, resolve, notice) for dashboards."""
        return self._key("alerts")

    def alert_record(self, fingerprint: str) -> str:
        """Hash: the state of one alert condition (pending, firing, resolved, notice)."""
        return self._key("alert", fingerprint)

    def alert_active(self) -> str:
        """Set of the fingerprints of alerts that are pending or firing."""
        return self._key("alert-active")

    def alert_index(self) -> str:
        """Sorted set of alert fingerprints scored by their last change (unix seconds)."""
        return self._key("alert-index")

    def fast_alerts(self) -> str:
        """Hash: fast alert id -> JSON record (a bright new source in one chunk's image)."""
        return self._key("fast-alerts")

    def fast_alert_index(self) -> str:
        """Sorted set of fast alert ids scored by detection time (unix seconds)."""
        return self._key("fast-alerts", "index")

    def fast_searched(self) -> str:
        """Hash: chunk id -> JSON list of its fast alert ids (present: the chunk was searched)."""
        return self._key("fast-alerts", "searched")

    def alert_mark(self, name: str) -> str:
        """A high-water mark a rule keeps across daemons (e.g. candidates already announced)."""
        return self._key("alert-mark", name)

    # calibration solutions ------------------------------------------------------
    def cal_solution(self, solution_id: str) -> str:
        """Hash: one registered calibration solution (its sidecar's fields and the registry's)."""
        return self._key("cal", "solution", solution_id)

    def cal_index(self, kind: str) -> str:
        """Sorted set of the solution ids of one kind (bandpass, gains) scored by the start
        of their validity (MJD)."""
        return self._key("cal", "index", kind)

    def cal_block(self, block_id: str) -> str:
        """Hash: kind -> the id of the newest solution a block's runs registered."""
        return self._key("cal", "block", block_id)

    def cal_counts(self) -> str:
        """Hash: ``<kind>:<status>`` -> how many registered solutions are in that state."""
        return self._key("cal", "counts")

    def cal_coverage(self) -> str:
        """Hash: ``first_mjd``/``last_mjd`` of the data blocks a calibrate stage has run on."""
        return self._key("cal", "coverage")

    def housekeeping_done(self) -> str:
        """Present while the last housekeeping run is younger than its interval."""
        return self._key("housekeeping", "done")
