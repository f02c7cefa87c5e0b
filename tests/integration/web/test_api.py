"""The console's HTTP API on a real server (Hypercorn in this loop, the embedded Valkey or the
system Redis), over recorded pipeline state: every endpoint answers what its OpenAPI description
says, with the same data as the operations dsa110ctl calls, and refuses what it must."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import redis.asyncio as aioredis
from openapi_spec_validator import validate

from dsa110d.config import Config
from dsa110d.operations.fast_alerts import latest_fast_alerts
from dsa110d.operations.queues import queue_stats
from dsa110d.operations.records import latest_candidates, list_blocks, list_sets
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from dsa110d.state.monitored import MonitoredSources
from dsa110d.web import api
from dsa110d.web.security import CONTENT_SECURITY_POLICY
from tests.integration.web.webkit import (
    BLOCK_QA,
    TRANSIENT_JUMP_JY,
    XSS_FILE,
    XSS_REASON,
    XSS_SOURCE,
    aget,
    record_everything,
    serving,
)

pytestmark = pytest.mark.anyio


async def _record_fast_alerts(config: Config, redis: aioredis.Redis) -> None:
    keys = Keys(config.redis.namespace)
    lease = await Leases(redis, keys, config.leases).acquire("set:F")
    assert lease is not None
    alerts = [
        {"alert_id": f"F/DSA J{i}", "name": f"DSA J{i}", "chunk_id": "F", "detected_at": i,
         "status": status}
        for i, status in ((1, "retracted"), (2, "confirmed"), (3, "pending"))
    ]  # fmt: skip
    store = FastAlerts(redis, keys)
    await Leases(redis, keys, config.leases).run_fenced(
        lease, lambda pipe: store.stage_record(pipe, "F", alerts)
    )


def _filled(path: str, transient: str) -> str:
    return path.replace("{source_id}", quote(transient, safe=""))


async def test_every_endpoint_answers_as_described(config: Config, redis: aioredis.Redis) -> None:
    recorded = await record_everything(config, redis)
    async with serving(config, redis) as url:
        served = (await aget(url + "/api/v1/openapi.json")).json()
        validate(served)
        assert set(served["paths"]) == {api.API_PREFIX + e.path for e in api.ENDPOINTS}
        for path, item in served["paths"].items():
            reply = await aget(url + _filled(path, recorded.transient))
            assert reply.status == 200, (path, reply.text)
            assert reply.headers["content-type"].startswith("application/json")
            assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert reply.headers["x-content-type-options"] == "nosniff"
            schema = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            jsonschema.validate(reply.json(), schema)


async def test_answers_are_the_operations_that_dsa110ctl_calls(
    config: Config, redis: aioredis.Redis
) -> None:
    recorded = await record_everything(config, redis, n_sets=24, n_blocks=5, n_sources=30)
    async with serving(config, redis) as url:
        sets = (await aget(url + "/api/v1/sets")).json()
        assert sets == [r.to_dict() for r in await list_sets(config, None, 200)]
        assert len(sets) == 24
        blocks = (await aget(url + "/api/v1/blocks?state=failed")).json()
        assert blocks == [r.to_dict() for r in await list_blocks(config, "failed")]
        assert [b["error"] for b in blocks] == ["StageError: flag: <aoflagger> died"]
        processed = (await aget(url + "/api/v1/blocks?state=processed")).json()
        assert [b["qa"] for b in processed] == [BLOCK_QA] * 4
        queues = (await aget(url + "/api/v1/queues")).json()
        assert queues == [r.__dict__ for r in await queue_stats(config)]
        await _record_fast_alerts(config, redis)
        fast = (await aget(url + "/api/v1/fast-alerts?status=confirmed")).json()
        assert fast == await latest_fast_alerts(config, 100, "confirmed")
        assert [a["name"] for a in fast] == ["DSA J2"]
        report = await latest_candidates(config, "variable")
        assert report is not None
        variables = (await aget(url + "/api/v1/candidates?class=variable")).json()
        assert variables["candidates"] == report.candidates
        assert {c["class"] for c in variables["candidates"]} == {"variable"}

        dead = (await aget(url + "/api/v1/dead-letters")).json()
        assert dead["total"] == 2 and dead["by_type"]["HDF5_PROCESSING"] == 2
        assert {r["reason"] for r in dead["by_reason"]} == {
            XSS_REASON,
            "InputFileError: truncated file",
        }

        curve = (await aget(url + f"/api/v1/sources/{recorded.transient}/light-curve")).json()
        assert len(curve["mjd"]) == recorded.points == 5
        assert curve["mjd"] == sorted(curve["mjd"])
        assert curve["flux_jy"][-1] == pytest.approx(TRANSIENT_JUMP_JY)
        assert sorted(curve["files"]) == sorted(
            f"photometry/{block}.v1.parquet" for block in curve["block_id"]
        )
        eta_v = (await aget(url + "/api/v1/variability/eta-v")).json()
        assert len(eta_v["eta"]) == len(eta_v["v"]) == recorded.sources

        overview = (await aget(url + "/api/v1/overview")).json()
        assert overview["health"] == "UNHEALTHY"  # no daemon registered in this namespace
        assert sum(h["sets"] for h in overview["sets_per_hour"]) == 24
        assert overview["dead_letters"] == 2
        assert [a["rule"] for a in overview["alerts_firing"]] == ["dead_letters_growing"]
        analysis = (await aget(url + "/api/v1/analysis")).json()
        assert [r["run"] for r in analysis["runs"]] == ["20261118T120000Z"]
        assert analysis["runs"][0]["candidates"] == 3


async def test_a_damaged_new_source_is_named_and_the_rest_served(
    config: Config, redis: aioredis.Redis
) -> None:
    """``/new-sources`` reads each monitored entry on its own: a damaged one is named under
    ``unreadable`` and the readable ones are still served."""
    keys = Keys(config.redis.namespace)
    good = {"candidate_id": "DSA J1", "ra_deg": 165.2, "dec_deg": 60.1, "first_block": "B1"}
    assert await MonitoredSources(redis, keys).register(good)
    await redis.hset(keys.monitored(), "DSA J2", "{not json")  # type: ignore[misc]
    async with serving(config, redis) as url:
        reply = await aget(url + "/api/v1/new-sources")
    assert reply.status == 200, reply.text
    doc = reply.json()
    assert doc["new_sources"] == [good]
    assert [u["candidate_id"] for u in doc["unreadable"]] == ["DSA J2"]


async def test_bad_requests_are_refused_in_one_line(config: Config, redis: aioredis.Redis) -> None:
    await record_everything(config, redis, n_sets=2, n_blocks=2, n_sources=4)
    async with serving(config, redis) as url:
        cases: list[tuple[str, int]] = [
            ("/api/v1/sets?state=nonsense", 400),
            ("/api/v1/sets?limit=-1", 400),
            ("/api/v1/candidates?class=stable", 400),
            ("/api/v1/sources/J9999+9999/light-curve", 404),
            ("/api/v1/sources/" + quote("a b<", safe="") + "/light-curve", 400),
            ("/api/v1/files?under=../..", 400),
            ("/api/v1/nothing", 404),
        ]
        for path, status in cases:
            reply = await aget(url + path)
            assert reply.status == status, (path, reply.text)
            error = reply.json()["error"]
            assert error and "\n" not in error and "Traceback" not in error
        for path in ("/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/x.hdf5"):
            assert (await aget(url + path)).status in (400, 404), path
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            refused = await aget(url + "/api/v1/sets", method=method)
            assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD"


async def test_result_files_download_and_plots_show_inline(
    config: Config, redis: aioredis.Redis
) -> None:
    await record_everything(config, redis, n_sets=2, n_blocks=2, n_sources=4)
    async with serving(config, redis) as url:
        files = (await aget(url + "/api/v1/files?under=photometry")).json()
        assert {f["kind"] for f in files} == {"Parquet"} and len(files) == 2
        parquet = await aget(url + "/files/" + quote(files[0]["path"]))
        assert parquet.status == 200 and parquet.body[:4] == b"PAR1"
        assert parquet.headers["content-disposition"].startswith("attachment")
        shown = await aget(url + "/files/variability/candidates.json")
        assert shown.status == 200 and shown.headers["content-disposition"].startswith("inline")


async def test_markup_from_the_pipeline_is_served_as_text(
    config: Config, redis: aioredis.Redis
) -> None:
    await record_everything(config, redis, n_sets=2, n_blocks=2, n_sources=4)
    async with serving(config, redis) as url:
        pages: dict[str, Any] = {
            "/dead-letters": XSS_REASON,
            "/files": XSS_FILE,
            "/candidates": XSS_SOURCE,
            "/blocks": "<aoflagger>",
            "/": "<in hdf5>",
        }
        for page, markup in pages.items():
            reply = await aget(url + page)
            assert reply.status == 200, page
            assert reply.headers["content-type"].startswith("text/html")
            assert markup not in reply.text, page
            assert html.escape(markup, quote=False) in reply.text.replace("&#34;", '"'), page
            assert "<script>" not in reply.text  # no inline script at all: the CSP forbids it
