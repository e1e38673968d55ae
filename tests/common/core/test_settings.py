from __future__ import annotations

import pytest

from common.core.settings import Settings, SettingsError


def test_defaults_work_without_any_environment():
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.consumer_max_deliveries == 5
    assert settings.access_token_ttl_s == 900


def test_values_are_read_and_cast_from_the_environment():
    settings = Settings.from_env(
        {"PORT": "9000", "UPSTREAM_TIMEOUT_S": "2.5", "AUTH_URL": "http://a:1, http://b:2", "SERVICE_NAME": "x"}
    )
    assert settings.port == 9000
    assert settings.upstream_timeout_s == 2.5
    assert settings.auth_url == ("http://a:1", "http://b:2")
    assert settings.consumer_name.startswith("x-")


def test_a_malformed_value_fails_fast_naming_the_variable():
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="CONSUMER_CONCURRENCY"):
        Settings.from_env({"CONSUMER_CONCURRENCY": "0"})
    with pytest.raises(SettingsError, match="REDIS_POOL_MAX"):
        Settings.from_env({"REDIS_POOL_MAX": "0"})
    with pytest.raises(SettingsError, match="REDIS_POOL_TIMEOUT_S"):
        Settings.from_env({"REDIS_POOL_TIMEOUT_S": "0"})


def test_only_configured_upstreams_are_listed():
    settings = Settings.from_env({"AUTH_URL": "http://a:1", "PROJECT_URL": ""})
    assert settings.upstreams() == {"auth_svc": ("http://a:1",)}
