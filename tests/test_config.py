"""Settings: defaults < after.conf < environment < flags, and one-line errors without passwords."""

import os
from pathlib import Path

import pytest

from afterd.config import ConfigError, Settings, load_settings, mask_url, worker_state_dir


def write_conf(tmp_path, text):
    path = tmp_path / "after.conf"
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path):
    settings = load_settings({}, env={"AFTER_CONFIG": str(write_conf(tmp_path, ""))})
    assert settings.couchdb_url == "http://127.0.0.1:5984"
    assert settings.database == "tasks"
    assert settings.jobs_dir == Path("/usr/local/etc/after")
    assert settings.concurrency == (os.cpu_count() or 1)
    assert settings.default_timeout_s is None
    assert (settings.lease_s, settings.skew_margin_s, settings.kill_grace_s, settings.stop_grace_s) == (60, 5, 10, 30)
    assert settings.log_level == "info"
    assert settings.host


@pytest.mark.parametrize("conf, env, flags, expected_database", [
    ("", {}, {}, "tasks"),                                                   # default
    ('database = "fromfile"', {}, {}, "fromfile"),                           # file beats default
    ('database = "fromfile"', {"AFTER_DATABASE": "fromenv"}, {}, "fromenv"),  # env beats file
    ('database = "fromfile"', {"AFTER_DATABASE": "fromenv"}, {"database": "fromflag"}, "fromflag"),
    ('database = "fromfile"', {}, {"database": None}, "fromfile"),           # an unset flag changes nothing
])
def test_precedence(tmp_path, conf, env, flags, expected_database):
    env = {"AFTER_CONFIG": str(write_conf(tmp_path, conf)), **env}
    assert load_settings(flags, env=env).database == expected_database


def test_every_layer_sets_its_own_fields(tmp_path):
    conf = write_conf(tmp_path, 'lease_s = 90\nkill_grace_s = 2.5\njobs_dir = "/srv/jobs"\n'
                                'default_timeout_s = 600\nlog_level = "debug"\n')
    env = {"AFTER_CONFIG": str(conf), "AFTER_CONCURRENCY": "3", "AFTER_COUCHDB_URL": "http://db:5984/",
           "AFTER_STATE_DIR": str(tmp_path / "state"), "AFTER_LOG_LEVEL": "WARNING"}
    settings = load_settings({"lease_s": 30}, env=env)
    assert settings.lease_s == 30.0                  # flag over file
    assert settings.kill_grace_s == 2.5              # file
    assert settings.jobs_dir == Path("/srv/jobs")
    assert settings.default_timeout_s == 600.0
    assert settings.concurrency == 3                 # environment
    assert settings.couchdb_url == "http://db:5984"  # trailing slash dropped
    assert settings.log_level == "warning"           # env over file, case-insensitive
    assert worker_state_dir(settings, "manobi") == tmp_path / "state" / "manobi"


def test_missing_default_file_is_fine_but_a_named_one_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings({}, env={"AFTER_CONFIG": str(tmp_path / "nope.conf")})
    assert str(e.value) == f"{tmp_path / 'nope.conf'}: no such file (named by AFTER_CONFIG)"


@pytest.mark.parametrize("text, message", [
    ('colour = "blue"\n', "unknown setting 'colour'"),
    ('lease_s = "soon"\n', "lease_s must be a number, not 'soon'"),
    ("lease_s = true\n", "lease_s must be a number, not a boolean"),
    ("concurrency = 0\n", "concurrency must be at least 1"),
    ("concurrency = 1.5\n", "concurrency must be a whole number"),
    ('log_level = "loud"\n', "log_level must be one of debug, info, warning, error"),
    ('database = "Tasks"\n', "database must be a CouchDB database name"),
    ("database = 3\n", "database must be a CouchDB database name"),
    ('couchdb_url = "ftp://x"\n', "couchdb_url must be an http(s) URL"),
    ('database = "tasks"\nlease_s = [\n', "malformed TOML"),
    ('a = 1\nb = = 2\n', "line 2"),
])
def test_file_errors_are_one_line_naming_file_and_key(tmp_path, text, message):
    conf = write_conf(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings({}, env={"AFTER_CONFIG": str(conf)})
    assert message in str(e.value)
    assert str(e.value).startswith(str(conf))
    assert "\n" not in str(e.value)


def test_unreadable_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings({}, env={"AFTER_CONFIG": str(tmp_path)})   # a folder, not a file
    assert str(e.value).startswith(f"{tmp_path}: cannot read")


@pytest.mark.parametrize("env, message", [
    ({"AFTER_CONCURRENCY": "many"}, "AFTER_CONCURRENCY: concurrency must be a whole number, not 'many'"),
    ({"AFTER_LEASE_S": "-1"}, "AFTER_LEASE_S: lease_s must be a positive number of seconds"),
    ({"AFTER_DATABASE": "has space"}, "AFTER_DATABASE: database must be a CouchDB database name"),
])
def test_environment_errors_name_the_variable(tmp_path, env, message):
    env = {"AFTER_CONFIG": str(write_conf(tmp_path, "")), **env}
    with pytest.raises(ConfigError) as e:
        load_settings({}, env=env)
    assert message in str(e.value)


def test_flag_errors_name_the_flag(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings({"concurrency": "x"}, env={"AFTER_CONFIG": str(write_conf(tmp_path, ""))})
    assert str(e.value).startswith("--concurrency: ")


def test_a_bad_url_never_shows_its_password(tmp_path):
    env = {"AFTER_CONFIG": str(write_conf(tmp_path, "")), "AFTER_COUCHDB_URL": "htp://admin:s3cret@db:5984"}
    with pytest.raises(ConfigError) as e:
        load_settings({}, env=env)
    assert "s3cret" not in str(e.value)
    assert "admin:***@db:5984" in str(e.value)


def test_settings_repr_masks_the_password(tmp_path):
    env = {"AFTER_CONFIG": str(write_conf(tmp_path, "")), "AFTER_COUCHDB_URL": "http://admin:s3cret@db:5984"}
    settings = load_settings({}, env=env)
    assert settings.couchdb_url == "http://admin:s3cret@db:5984"   # the worker needs it
    assert "s3cret" not in repr(settings)
    assert settings.safe_couchdb_url == "http://admin:***@db:5984"


@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.1:5984", "http://127.0.0.1:5984"),
    ("http://admin:pw@127.0.0.1:5984/", "http://admin:***@127.0.0.1:5984/"),
    ("https://a%40b:p%3Aw@db.example:6984/x", "https://a%40b:***@db.example:6984/x"),
    ("http://admin:pw@[::1]:5984", "http://admin:***@[::1]:5984"),
    ("http://admin:@db", "http://admin:***@db"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_state_dir_default_depends_on_the_user(tmp_path):
    settings = load_settings({}, env={"AFTER_CONFIG": str(write_conf(tmp_path, "")),
                                      "XDG_STATE_HOME": str(tmp_path / "xdg")})
    expected = Path("/var/lib/after") if os.geteuid() == 0 else tmp_path / "xdg" / "after"
    assert settings.state_dir == expected


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Settings().database = "other"


def test_metrics_dir_defaults_to_debians_node_exporter_folder_and_none_turns_it_off(tmp_path):
    conf = tmp_path / "after.conf"
    conf.write_text('metrics_dir = "/srv/textfiles"\n')
    env = {"AFTER_CONFIG": str(conf)}
    assert load_settings(env={"AFTER_CONFIG": os.devnull}).metrics_dir == Path("/var/lib/prometheus/node-exporter")
    assert load_settings(env=env).metrics_dir == Path("/srv/textfiles")
    assert load_settings(env={**env, "AFTER_METRICS_DIR": "none"}).metrics_dir is None
    assert load_settings(env={**env, "AFTER_METRICS_DIR": ""}).metrics_dir is None
    assert load_settings({"metrics_dir": str(tmp_path)}, env=env).metrics_dir == tmp_path
    conf.write_text("metrics_dir = 3\n")
    with pytest.raises(ConfigError, match="metrics_dir must be a folder path"):
        load_settings(env=env)


def test_output_limit_and_history_limit_from_file_environment_and_flags(tmp_path):
    conf = tmp_path / "after.conf"
    conf.write_text("output_limit = 1024\nhistory_limit = 50\n")
    env = {"AFTER_CONFIG": str(conf)}
    default = load_settings(env={"AFTER_CONFIG": os.devnull})
    assert (default.output_limit, default.history_limit) == (4096, 20)
    assert (load_settings(env=env).output_limit, load_settings(env=env).history_limit) == (1024, 50)
    assert load_settings(env={**env, "AFTER_OUTPUT_LIMIT": "0"}).output_limit == 0   # keep none
    assert load_settings({"history_limit": 3}, env=env).history_limit == 3
    for bad in ("-1", "1001", "x"):
        with pytest.raises(ConfigError, match="AFTER_HISTORY_LIMIT"):
            load_settings(env={**env, "AFTER_HISTORY_LIMIT": bad})
