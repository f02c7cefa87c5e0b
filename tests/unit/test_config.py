"""The configuration: defaults, environments, overrides, and one-line errors for mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsa110d.config import Config, load_config, reloadable_changes
from dsa110d.errors import ConfigError

SERVICES_YAML = Path(__file__).resolve().parents[2] / "etc" / "dsa110" / "services.yaml"
BIN = Path(sys.executable).parent  # the console scripts installed beside this python


def test_yaml_defaults_are_the_model_defaults() -> None:
    defaults = yaml.safe_load(SERVICES_YAML.read_text())["defaults"]
    from_yaml = Config.model_validate(defaults).model_dump(mode="json", exclude={"env"})
    assert from_yaml == Config().model_dump(mode="json", exclude={"env"})


def test_yaml_lists_every_key_of_the_model() -> None:
    def keys(data: object, prefix: str = "") -> set[str]:
        if not isinstance(data, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}.{k}" if prefix else k) for k, v in data.items()))

    defaults = yaml.safe_load(SERVICES_YAML.read_text())["defaults"]
    assert keys(defaults) == keys(Config().model_dump(mode="json", exclude={"env"}))


def test_original_service_defaults() -> None:
    cfg = load_config(SERVICES_YAML, "production", {})
    watcher = cfg.services.hdf5_watcher
    assert (watcher.poll_interval_sec, watcher.expected_subbands) == (60, 16)
    assert (watcher.file_pattern, watcher.processing_timeout_sec) == ("20*T*.hdf5", 300)
    proc = cfg.services.ms_processor
    assert (proc.poll_interval_sec, proc.mosaic_duration_min, proc.mosaic_overlap_min) == (
        120,
        60,
        5,
    )
    assert (proc.ms_chunk_duration_min, proc.processing_timeout_sec) == (5, 1800)
    ana = cfg.services.variability_analyzer
    assert (ana.analysis_interval_hours, ana.min_data_points) == (1, 10)
    assert (ana.variability_threshold, ana.analysis_timeout_sec) == (0.1, 600)
    assert cfg.redis.namespace == "dsa110"
    assert not cfg.redis.embedded


@pytest.mark.parametrize(
    ("env", "poll", "embedded", "subbands"),
    [("development", 10, True, 16), ("testing", 1, True, 4), ("production", 60, False, 16)],
)
def test_environments_overlay_the_defaults(
    env: str, poll: float, embedded: bool, subbands: int
) -> None:
    cfg = load_config(SERVICES_YAML, env, {})
    assert cfg.env == env
    assert cfg.services.hdf5_watcher.poll_interval_sec == poll
    assert cfg.redis.embedded is embedded
    assert cfg.services.hdf5_watcher.expected_subbands == subbands
    # untouched keys keep the shared default
    assert cfg.services.ms_processor.mosaic_duration_min == 60


def test_environment_from_variable_then_development() -> None:
    assert load_config(SERVICES_YAML, None, {"DSA110_ENV": "testing"}).env == "testing"
    assert load_config(SERVICES_YAML, None, {}).env == "development"
    assert load_config(SERVICES_YAML, "production", {"DSA110_ENV": "testing"}).env == "production"


def test_file_from_variable(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("defaults:\n  services:\n    hdf5_watcher:\n      poll_interval_sec: 7\n")
    cfg = load_config(None, "production", {"DSA110_CONFIG": str(path)})
    assert cfg.services.hdf5_watcher.poll_interval_sec == 7


def test_environment_variable_overrides_any_key() -> None:
    environ = {
        "DSA110__SERVICES__HDF5_WATCHER__POLL_INTERVAL_SEC": "5",
        "DSA110__REDIS__NAMESPACE": "other",
        "DSA110__PIPELINE__STAGES": "[flag]",
    }
    cfg = load_config(SERVICES_YAML, "production", environ)
    assert cfg.services.hdf5_watcher.poll_interval_sec == 5
    assert cfg.redis.namespace == "other"
    assert cfg.pipeline.stages == ["flag"]


def test_redacted_hides_passwords() -> None:
    environ = {
        "DSA110__REDIS__PASSWORD": "hunter2-secret",
        "DSA110__REDIS__URL": "redis://ops:hunter2-secret@db.example:6379/0",
    }
    cfg = load_config(SERVICES_YAML, "production", environ)
    shown = str(cfg.redacted())
    assert "hunter2-secret" not in shown
    assert "ops:***@db.example" in shown
    assert "hunter2-secret" not in repr(cfg)


def test_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    cfg = load_config(SERVICES_YAML, "production", {"DSA110__REDIS__PASSWORD_FILE": str(secret)})
    assert cfg.redis.secret_password() == "from-a-file"


def test_reloadable_changes_name_the_keys() -> None:
    old = load_config(SERVICES_YAML, "production", {})
    new = load_config(
        SERVICES_YAML, "production", {"DSA110__SERVICES__MS_PROCESSOR__POLL_INTERVAL_SEC": "3"}
    )
    assert reloadable_changes(old, new) == {"services.ms_processor.poll_interval_sec": (120.0, 3.0)}


BAD_CONFIGS = [
    (
        "misspelt key",
        "defaults:\n  services:\n    hdf5_watcher:\n      pol_interval_sec: 5\n",
        "services.hdf5_watcher.pol_interval_sec: unknown key",
    ),
    (
        "unknown section",
        "defaults:\n  servises: {}\n",
        "servises: unknown key",
    ),
    (
        "wrong type",
        "defaults:\n  services:\n    hdf5_watcher:\n      poll_interval_sec: often\n",
        "services.hdf5_watcher.poll_interval_sec: Input should be a valid number",
    ),
    (
        "negative interval",
        "defaults:\n  services:\n    ms_processor:\n      poll_interval_sec: -5\n",
        "services.ms_processor.poll_interval_sec: Input should be greater than 0 (got -5)",
    ),
    (
        "zero interval",
        "defaults:\n  services:\n    variability_analyzer:\n      analysis_interval_hours: 0\n",
        "services.variability_analyzer.analysis_interval_hours: Input should be greater than 0",
    ),
    (
        "overlap as long as the mosaic",
        "defaults:\n  services:\n    ms_processor:\n      mosaic_overlap_min: 60\n",
        "services.ms_processor: mosaic_overlap_min (60) must be less than mosaic_duration_min (60)",
    ),
    (
        "chunk longer than the mosaic",
        "defaults:\n  services:\n    ms_processor:\n      ms_chunk_duration_min: 90\n",
        "services.ms_processor: ms_chunk_duration_min (90) must not exceed mosaic_duration_min",
    ),
    (
        "YAML syntax error",
        "defaults:\n  services: [\n",
        ":3:1: YAML syntax error",
    ),
    (
        "unknown environment section",
        "environments:\n  staging: {}\n",
        "environments.staging: unknown environment",
    ),
    (
        "unknown top-level key",
        "service: {}\n",
        "unknown top-level key 'service'",
    ),
    (
        "too many subbands",
        "defaults:\n  services:\n    hdf5_watcher:\n      expected_subbands: 17\n",
        "services.hdf5_watcher.expected_subbands: Input should be less than or equal to 16",
    ),
    (
        "bad on_incomplete",
        "defaults:\n  services:\n    hdf5_watcher:\n      on_incomplete: skip\n",
        "services.hdf5_watcher.on_incomplete: Input should be 'wait', 'partial' or 'fail'",
    ),
    (
        "port out of range",
        "defaults:\n  redis:\n    port: 70000\n",
        "redis.port: Input should be less than or equal to 65535",
    ),
    (
        "section that is not a mapping",
        "defaults:\n  redis: localhost\n",
        "redis: Input should be a valid dictionary",
    ),
    (
        "sentinel address without a port",
        "defaults:\n  redis:\n    sentinel:\n      master_name: m\n      addresses: [hostonly]\n",
        "redis.sentinel: sentinel address 'hostonly' is not host:port",
    ),
    (
        "lease renewal not before expiry",
        "defaults:\n  leases:\n    ttl_sec: 5\n    renew_interval_sec: 5\n",
        "leases: renew_interval_sec must be less than ttl_sec",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configuration_gives_one_line(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, "production", {})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(str(path))


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"services\.hdf5_watcher\.poll_interval_sec"):
        load_config(
            SERVICES_YAML, "production", {"DSA110__SERVICES__HDF5_WATCHER__POLL_INTERVAL_SEC": "-1"}
        )


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml", "production", {})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, "production", {})


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_bytes(b"defaults:\n  redis:\n    host: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, "production", {})


def test_unknown_environment_name() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'staging'"):
        load_config(SERVICES_YAML, "staging", {})


CLI_CASES = [*BAD_CONFIGS[:4], BAD_CONFIGS[5], BAD_CONFIGS[7]]


@pytest.mark.parametrize(("case", "text", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_config_check_exits_2_with_one_line(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(text)
    done = subprocess.run(
        [str(BIN / "dsa110ctl"), "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]


def test_daemon_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(BAD_CONFIGS[0][1])
    done = subprocess.run(
        [str(BIN / "dsa110d"), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "unknown key" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "secret", ["123456", "yes", "0o17", "[x, y]", "a: b", "pw # not a comment"]
)
def test_secrets_from_the_environment_are_plain_strings(secret: str) -> None:
    environ = {
        "DSA110__REDIS__PASSWORD": secret,
        "DSA110__REDIS__URL": f"redis://:{secret}@db",
        "DSA110__ALERTS__WEBHOOK__URL": f"https://hooks.example/{secret}",
    }
    cfg = load_config(SERVICES_YAML, "production", environ)
    assert cfg.redis.password is not None and cfg.redis.password.get_secret_value() == secret
    assert cfg.redis.url is not None and cfg.redis.url.get_secret_value() == f"redis://:{secret}@db"
    hook = cfg.alerts.webhook.url
    assert hook is not None and hook.get_secret_value() == f"https://hooks.example/{secret}"


def test_a_validation_error_never_echoes_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("defaults:\n  redis:\n    password: 424242\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, "production", {})
    assert "redis.password" in str(caught.value)
    assert "424242" not in str(caught.value)


MASKED_BY_DEVELOPMENT = (
    "defaults:\n  services:\n    ms_processor:\n      mosaic_overlap_min: 60\n"
    "environments:\n  development:\n    services:\n      ms_processor:\n"
    "        mosaic_overlap_min: 5\n  production: {}\n"
)


def ctl_check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dsa110ctl"), "config", "check", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DSA110_ENV": "development"},
    )


def test_config_check_without_env_checks_every_environment_the_file_defines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(MASKED_BY_DEVELOPMENT)
    done = ctl_check(path)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "environment production:" in lines[0]
    assert "mosaic_overlap_min (60) must be less than" in lines[0]


def test_config_check_with_env_checks_only_that_environment(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(MASKED_BY_DEVELOPMENT)
    assert ctl_check(path, "--env", "development").returncode == 0
    assert ctl_check(path, "--env", "production").returncode == 2


def test_config_check_names_every_environment_it_validated() -> None:
    done = ctl_check(SERVICES_YAML)
    assert done.returncode == 0, done.stderr
    assert "valid for environments development, production, testing" in done.stdout


def test_an_smtp_login_without_starttls_is_a_configuration_error() -> None:
    environ = {
        "DSA110__ALERTS__EMAIL__USERNAME": "dsa110",
        "DSA110__ALERTS__EMAIL__PASSWORD_FILE": "/etc/dsa110/smtp.password",
    }
    with pytest.raises(
        ConfigError, match=r"alerts\.email: username and password_file need starttls"
    ):
        load_config(SERVICES_YAML, "production", environ)
    with_tls = {**environ, "DSA110__ALERTS__EMAIL__STARTTLS": "true"}
    assert load_config(SERVICES_YAML, "production", with_tls).alerts.email.starttls


def test_a_clean_mask_below_its_threshold_is_refused_when_the_file_is_read() -> None:
    # wsclean would refuse it only when the first chunk is imaged (exit 255)
    environ = {
        "DSA110__IMAGING__AUTO_THRESHOLD_SIGMA": "5",
        "DSA110__IMAGING__AUTO_MASK_SIGMA": "4",
    }
    with pytest.raises(
        ConfigError, match=r"imaging: auto_mask_sigma \(4\) must exceed auto_threshold_sigma \(5\)"
    ):
        load_config(SERVICES_YAML, "production", environ)
