"""Retry with full-jitter backoff and the circuit breaker, on an injected clock and sleep."""

from __future__ import annotations

import anyio
import pytest

from dsa110d.config import Config, RetryConfig
from dsa110d.errors import CircuitOpenError
from dsa110d.resilience import (
    BREAKER_GAUGE,
    STATE_SERVER_BREAKER,
    Backoff,
    BreakerBoard,
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    retry,
    state_server_breaker,
)

pytestmark = pytest.mark.anyio


def state_now(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state read afresh (mypy would keep the state an earlier assert saw)."""
    return breaker.state


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_policy_comes_from_config_and_ceilings_double_up_to_the_cap() -> None:
    policy = RetryPolicy.from_config(RetryConfig(max_attempts=4, base_delay_sec=1, max_delay_sec=5))
    assert policy.max_attempts == 4
    assert [policy.ceiling(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert policy.ceiling(10_000) == 5


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(5, 1.0, 60.0)
    assert policy.delay(3, rng=lambda: 0.0) == 0.0
    assert policy.delay(3, rng=lambda: 0.5) == 2.0
    assert policy.delay(3, rng=lambda: 1.0) == 4.0


def test_a_floor_keeps_part_of_the_ceiling_as_restarts_need() -> None:
    # The supervisor's restart backoff: never straight back, at most the cap.
    policy = RetryPolicy(base_delay_sec=0.5, max_delay_sec=30.0, min_fraction=0.5)
    assert policy.delay(1, lambda: 1.0) == 0.5
    assert policy.delay(4, lambda: 1.0) == 4.0
    assert policy.delay(4, lambda: 0.0) == 2.0  # jitter: down to half
    assert policy.delay(101, lambda: 1.0) == 30.0


async def test_retry_succeeds_after_transient_failures_with_backoff() -> None:
    clock = FakeClock()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("transient")
        return "ok"

    result = await retry(flaky, RetryPolicy(5, 1.0, 60.0), sleep=clock.sleep, rng=lambda: 1.0)
    assert result == "ok" and calls == 3
    assert clock.slept == [1.0, 2.0]


async def test_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"failure {calls}")

    with pytest.raises(ConnectionError, match="failure 3"):
        await retry(broken, RetryPolicy(3, 0.5, 60.0), sleep=clock.sleep, rng=lambda: 1.0)
    assert calls == 3 and clock.slept == [0.5, 1.0]


async def test_retry_does_not_retry_other_errors() -> None:
    calls = 0

    async def wrong() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not transient")

    with pytest.raises(KeyError):
        await retry(wrong, RetryPolicy(5, 1.0, 2.0), retry_on=(ConnectionError,))
    assert calls == 1


def test_backoff_grows_and_resets() -> None:
    backoff = Backoff(RetryPolicy(1, 0.1, 0.4), rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    backoff.reset()
    assert backoff.next_delay() == 0.1


async def _fail() -> None:
    raise OSError("redis down")


async def _ok() -> str:
    return "ok"


async def test_breaker_opens_after_n_failures_and_refuses_at_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", failure_threshold=3, reset_timeout_sec=10, clock=clock)
    for _ in range(3):
        assert breaker.state is BreakerState.CLOSED
        with pytest.raises(OSError):
            await breaker.call(_fail)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError, match="'redis' is open after 3 failures"):
        await breaker.call(_ok)
    snap = breaker.snapshot()
    assert snap.state is BreakerState.OPEN and snap.last_error == "OSError: redis down"


async def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("fs", failure_threshold=2, clock=FakeClock())
    with pytest.raises(OSError):
        await breaker.call(_fail)
    assert await breaker.call(_ok) == "ok"
    with pytest.raises(OSError):
        await breaker.call(_fail)
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_admits_a_single_probe_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", failure_threshold=1, reset_timeout_sec=10, clock=clock)
    with pytest.raises(OSError):
        await breaker.call(_fail)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    probe_may_finish = anyio.Event()
    outcomes: list[str] = []

    async def slow_probe() -> str:
        await probe_may_finish.wait()
        return "probed"

    async def second_caller() -> None:
        try:
            await breaker.call(_ok)
            outcomes.append("admitted")
        except CircuitOpenError:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _record(breaker.call(slow_probe), outcomes))
        await anyio.sleep(0)
        await second_caller()  # while the probe is in flight
        probe_may_finish.set()
    assert outcomes == ["refused", "probed"]
    assert state_now(breaker) is BreakerState.CLOSED


async def test_failed_probe_opens_the_breaker_again() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", failure_threshold=2, reset_timeout_sec=5, clock=clock)
    for _ in range(2):
        with pytest.raises(OSError):
            await breaker.call(_fail)
    clock.now += 5
    with pytest.raises(OSError):
        await breaker.call(_fail)  # the probe
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        await breaker.call(_ok)
    clock.now += 0.1
    assert await breaker.call(_ok) == "ok"
    assert state_now(breaker) is BreakerState.CLOSED


async def _record(call, outcomes: list[str]) -> None:  # type: ignore[no-untyped-def]
    outcomes.append(await call)


async def test_an_open_breaker_degrades_its_owner_and_a_daemon_wide_one_every_service() -> None:
    clock = FakeClock()
    board = BreakerBoard(failure_threshold=1, reset_timeout_sec=10, clock=clock)
    wsclean = board.get("wsclean", owner="processor")
    webhook = board.get("webhook")
    assert board.get("wsclean") is wsclean  # one breaker per name
    assert board.trouble("processor") == "" and board.trouble("watcher") == ""
    with pytest.raises(OSError):
        await wsclean.call(_fail)
    assert board.trouble("processor") == (
        "circuit 'wsclean' open after 1 failures (last: OSError: redis down)"
    )
    assert board.trouble("watcher") == ""  # not the watcher's dependency
    with pytest.raises(OSError):
        await webhook.call(_fail)
    assert "circuit 'webhook' open" in board.trouble("watcher")
    clock.now = 10
    assert "circuit 'webhook' half_open" in board.trouble("watcher")  # not yet recovered
    assert await webhook.call(_ok) == "ok"
    assert board.trouble("watcher") == ""
    states = {s.name: BREAKER_GAUGE[s.state] for s in board.snapshots()}
    assert states == {"wsclean": 1, "webhook": 0}


def test_the_state_server_breaker_probes_before_registry_entries_lapse() -> None:
    config = Config.model_validate(
        {"supervisor": {"registry_ttl_sec": 30}, "breakers": {"reset_timeout_sec": 60}}
    )
    breaker = state_server_breaker(BreakerBoard.from_config(config.breakers), config)
    assert breaker.reset_timeout_sec == 15  # half the registry TTL, not the board's 60 s
    assert breaker.name == STATE_SERVER_BREAKER
