"""Which services a daemon runs: the chosen ones minus those switched off in the config."""

from __future__ import annotations

import pytest

from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.lifecycle import enabled_services

pytestmark = pytest.mark.unit
ALL = ["watcher", "processor", "analyzer", "web"]


def test_the_console_runs_only_where_it_is_enabled() -> None:
    assert enabled_services(Config(), ALL) == ["watcher", "processor", "analyzer"]
    on = Config.model_validate({"services": {"web": {"enabled": True}}})
    assert enabled_services(on, ALL) == ALL


def test_choosing_only_switched_off_services_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"services\.web\.enabled is false"):
        enabled_services(Config(), ["web"])
    off = Config.model_validate({"services": {"hdf5_watcher": {"enabled": False}}})
    assert enabled_services(off, ["watcher", "web", "analyzer"]) == ["analyzer"]
