"""Retry with exponential backoff and full jitter, and an async circuit breaker.

Retry
    :class:`RetryPolicy` holds ``max_attempts``, ``base_delay_sec`` and ``max_delay_sec``
    (``config.retry``). The delay before retry *n* (n = 1 for the first retry) is drawn
    uniformly from ``[0, min(cap, base * 2**(n-1))]`` ("full jitter", AWS architecture blog,
    2015): many clients that failed together do not retry together. :func:`retry` calls an
    async function until it succeeds, it raises an exception that is not retryable, or
    ``max_attempts`` calls have failed (then the last error is raised unchanged).
    :class:`Backoff` is the unbounded variant for loops that must never give up (reconnecting
    to Redis): ``next_delay()`` grows to the cap and ``reset()`` after a success.

Circuit breaker
    :class:`CircuitBreaker` wraps calls to a dependency (Redis, a filesystem). It is CLOSED
    while calls succeed; after ``failure_threshold`` consecutive failures it OPENs and refuses
    calls at once with :class:`~dsa110d.errors.CircuitOpenError`; after ``reset_timeout_sec``
    it is HALF_OPEN and lets exactly one probe call through: success closes it, failure opens
    it again. ``state`` and ``snapshot()`` are readable at any time so that service health can
    report DEGRADED while a breaker is open. Time comes from an injectable monotonic clock.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from dsa110d.config import RetryConfig
from dsa110d.errors import CircuitOpenError, describe

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_attempts: int = 5
    base_delay_sec: float = 1.0
    max_delay_sec: float = 60.0
    min_fraction: float = 0.0
    """The least fraction of the ceiling a delay may be: 0 is full jitter (retries spread
    best); 0.5 keeps at least half, for a restart that must not come back at once."""

    @classmethod
    def from_config(cls, config: RetryConfig) -> RetryPolicy:
        return cls(config.max_attempts, config.base_delay_sec, config.max_delay_sec)

    def ceiling(self, retry_number: int) -> float:
        """The largest delay before retry ``retry_number`` (1-based): base * 2**(n-1), capped."""
        exponent = min(max(retry_number - 1, 0), 62)  # avoid float overflow for huge n
        return min(self.max_delay_sec, self.base_delay_sec * 2.0**exponent)

    def delay(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Jitter: uniform in [min_fraction, 1] x ceiling(retry_number) (full jitter at 0)."""
        return self.ceiling(retry_number) * (self.min_fraction + (1.0 - self.min_fraction) * rng())


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    sleep: Sleep = anyio.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``call()`` up to ``policy.max_attempts`` times; the last failure is re-raised."""
    attempt = 1
    while True:
        try:
            return await call()
        except retry_on as exc:
            if attempt >= policy.max_attempts:
                raise
            delay = policy.delay(attempt, rng)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)
            attempt += 1


class Backoff:
    """Unbounded exponential backoff with full jitter, for loops that never give up."""

    def __init__(self, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures, self._rng)

    def reset(self) -> None:
        self.failures = 0


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state for health reports and metrics."""

    name: str
    state: BreakerState
    consecutive_failures: int
    opened_for_sec: float
    last_error: str | None


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open (one probe) -> closed."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout_sec: float = 30.0,
        *,
        counted: tuple[type[BaseException], ...] = (Exception,),
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_timeout_sec <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout_sec > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_sec = reset_timeout_sec
        self._counted = counted
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker past its timeout reads as half-open."""
        if self._state is BreakerState.OPEN and self._timeout_elapsed():
            return BreakerState.HALF_OPEN
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        opened_for = self._clock() - self._opened_at if state is not BreakerState.CLOSED else 0.0
        return BreakerSnapshot(self.name, state, self._failures, opened_for, self._last_error)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` through the breaker; refused at once with CircuitOpenError when open."""
        self._admit()
        try:
            result = await fn()
        except self._counted as exc:
            self.record_failure(exc)
            raise
        except BaseException:
            self._probe_in_flight = False  # cancelled probe: let the next caller probe
            raise
        self.record_success()
        return result

    def _timeout_elapsed(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_timeout_sec

    def _admit(self) -> None:
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN and self._timeout_elapsed():
            self._state = BreakerState.HALF_OPEN
        if self._state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        remaining = max(0.0, self.reset_timeout_sec - (self._clock() - self._opened_at))
        raise CircuitOpenError(
            f"circuit {self.name!r} is {self._state.value} after {self._failures} failures "
            f"(last: {self._last_error}); next probe in {remaining:.1f} s"
        )

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False
        self._last_error = None

    def record_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = describe(exc)
        probe_failed = self._state is BreakerState.HALF_OPEN
        self._probe_in_flight = False
        if probe_failed or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
