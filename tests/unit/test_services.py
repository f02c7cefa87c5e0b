"""The services' names: the seed's names (hdf5_watcher, ms_processor, variability_analyzer,
service_manager) and the registered ones are accepted wherever a service is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d import catalogue
from dsa110d.cli.daemon import instance_label, parse_services
from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.operations.backend import INSTANCES, check_instance
from dsa110d.operations.background import ProcessBackend
from dsa110d.services.base import load_service_modules, service_class

SEED_NAMES = {
    "hdf5_watcher": "watcher",
    "ms_processor": "processor",
    "variability_analyzer": "analyzer",
    "web": "web",  # the console: one name (services.web), run only where enabled
}


def test_each_builtin_service_has_one_entry_naming_its_section_and_class() -> None:
    registered = load_service_modules(environ={})
    for entry in catalogue.SERVICES:
        assert entry.name in registered
        assert entry.load() is service_class(entry.name)
        assert hasattr(Config().services, entry.section)
    assert {e.section: e.name for e in catalogue.SERVICES} == SEED_NAMES


@pytest.mark.parametrize(("seed", "name"), sorted(SEED_NAMES.items()))
def test_dsa110d_run_takes_the_seed_names(seed: str, name: str) -> None:
    assert parse_services(seed) == [name]
    assert parse_services(name) == [name]
    assert instance_label([name]) == seed  # the log file is logs/<seed>.log


def test_service_manager_runs_no_pipeline_service_and_all_runs_every_one() -> None:
    assert parse_services("service_manager") == []
    assert instance_label([]) == "service_manager"
    assert parse_services("all") == ["watcher", "processor", "analyzer", "web"]
    assert instance_label(parse_services("all")) == "all"
    assert parse_services("hdf5_watcher,analyzer") == ["watcher", "analyzer"]


def test_an_unknown_service_is_one_line_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_services("hdf5_watch")
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "unknown service 'hdf5_watch'" in line and "hdf5_watcher" in line
    with pytest.raises(ConfigError, match="unknown service 'hdf5_watch'"):
        check_instance("hdf5_watch")


def test_dsa110ctl_and_the_scripts_know_an_instance_by_its_seed_name(tmp_path: Path) -> None:
    for name in (*SEED_NAMES, "service_manager", "all"):
        assert name in INSTANCES and check_instance(name) == name
    for seed, name in SEED_NAMES.items():
        assert check_instance(name) == seed
    config = Config.model_validate({"paths": {"log_dir": str(tmp_path / "logs")}})
    backend = ProcessBackend(config, None)
    assert backend.log_file("watcher") == tmp_path / "logs" / "hdf5_watcher.log"
    assert backend.log_file("service_manager") == tmp_path / "logs" / "service_manager.log"
    assert backend.pid_file("processor") == backend.pid_file("ms_processor")
