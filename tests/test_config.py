"""Tests for load_config: reading the file, substitution, error lines, warnings, the example."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from pydantic import BaseModel

from mqtt_collector._config.load import Config, load_config
from mqtt_collector._exceptions import ConfigError
from tests.helpers.config import base, collector, error, load, subscription, write

EXAMPLE = Path(__file__).parent.parent / "config" / "example.yaml"


class TestFile:
    """Reading and parsing the file."""

    def test_load_config_reads_a_minimal_file(self, tmp_path: Path) -> None:
        """Subscriptions and collectors are all a file needs; the rest has defaults."""
        config = load(tmp_path, base())
        assert config.subscriptions[0].filter == "sensors/#"
        assert config.collectors[0].key == "store"
        assert config.broker.host == "127.0.0.1"

    def test_load_config_keeps_the_path_as_given(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Config.path is the name passed in, relative names staying relative."""
        monkeypatch.chdir(tmp_path)
        load(tmp_path, base())
        assert load_config(Path("config.yaml"), environ={}).path == "config.yaml"

    def test_load_config_names_the_file_as_given_in_errors(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error line starts with the file name exactly as it was passed."""
        error(tmp_path, base(brokers={}))
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigError) as caught:
            load_config("config.yaml", environ={})
        assert str(caught.value) == "config.yaml: brokers: unknown key"

    def test_load_config_reports_a_missing_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file that does not exist is 'cannot read' with the reason."""
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigError) as caught:
            load_config("config.yaml")
        assert str(caught.value) == (
            "config.yaml: cannot read: [Errno 2] No such file or directory: 'config.yaml'"
        )

    def test_load_config_reports_a_directory(self, tmp_path: Path) -> None:
        """A directory is not readable as a file."""
        with pytest.raises(ConfigError, match=r": cannot read: \[Errno 21\] Is a directory"):
            load_config(tmp_path)

    def test_load_config_reports_invalid_yaml_with_line_and_column(self, tmp_path: Path) -> None:
        """A YAML syntax error gives file:LINE:COL, 1-based, and the problem."""
        path = tmp_path / "config.yaml"
        path.write_text("broker:\n  host: a: b\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert (
            str(caught.value) == f"{path}:2:10: invalid YAML: mapping values are not allowed here"
        )

    def test_load_config_refuses_a_duplicate_key(self, tmp_path: Path) -> None:
        """A key given twice is an error at the second one, not silently shadowed."""
        path = tmp_path / "config.yaml"
        path.write_text("broker:\n  host: a\n  host: b\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert str(caught.value) == f"{path}:3:3: invalid YAML: duplicate key 'host'"

    @pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
    def test_load_config_refuses_an_empty_file(self, tmp_path: Path, text: str) -> None:
        """An empty document says so, and what it needs."""
        assert error(tmp_path, text) == (
            "the file is empty; it needs at least subscriptions and collectors"
        )

    def test_load_config_refuses_a_list_at_the_top(self, tmp_path: Path) -> None:
        """The top level must be a mapping."""
        assert error(tmp_path, "- a\n- b\n") == (
            "the top level must be a mapping of sections, got a list"
        )

    def test_load_config_refuses_a_non_utf8_file(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are a read error, not a traceback."""
        path = tmp_path / "config.yaml"
        path.write_bytes(b"broker: \xff\n")
        with pytest.raises(ConfigError, match=r": cannot read: 'utf-8' codec can't decode"):
            load_config(path)


class TestErrors:
    """The one-line error for each kind of problem."""

    def test_load_config_refuses_an_unknown_top_level_key(self, tmp_path: Path) -> None:
        """A misspelt section is an error naming it."""
        assert error(tmp_path, base(colectors=[])) == "colectors: unknown key"

    def test_load_config_refuses_a_missing_section(self, tmp_path: Path) -> None:
        """The subscriptions section is required."""
        data = base()
        del data["subscriptions"]
        assert error(tmp_path, data) == "subscriptions: required key is missing"

    def test_load_config_refuses_an_empty_list_of_subscriptions(self, tmp_path: Path) -> None:
        """The subscriptions list must not be empty."""
        assert error(tmp_path, base(subscriptions=[])) == "subscriptions: must not be empty"

    def test_load_config_refuses_an_empty_list_of_collectors(self, tmp_path: Path) -> None:
        """A daemon with no collectors would ack every message unread: collectors: [] is refused."""
        assert error(tmp_path, base(collectors=[])) == "collectors: must not be empty"

    def test_load_config_refuses_a_section_that_is_not_a_mapping(self, tmp_path: Path) -> None:
        """A section given as a list is a type error naming what was found."""
        assert error(tmp_path, base(queue=[1])) == "queue: must be a mapping, got a list"

    def test_load_config_refuses_a_null_section(self, tmp_path: Path) -> None:
        """An empty section (null) is a type error, not silently the defaults."""
        assert error(tmp_path, base(collectors=None)) == "collectors: must be a list, got null"

    def test_load_config_joins_several_errors_on_one_line(self, tmp_path: Path) -> None:
        """Every error is reported, separated by '; ', on one line."""
        data = base(broker={"port": 0, "prot": 1}, queue={"type": "random"})
        assert error(tmp_path, data) == (
            "broker.port: must be at least 1, got 0; broker.prot: unknown key;"
            " queue.type: must be 'fifo', 'lifo' or 'priority', got 'random'"
        )

    def test_load_config_prefers_the_precise_error(self, tmp_path: Path) -> None:
        """An empty string in a list is reported, not that the list ended up empty."""
        data = base(collectors=[collector(topics=[""])])
        assert error(tmp_path, data) == "collectors[0].topics[0]: must not be empty"

    def test_config_is_frozen(self, tmp_path: Path) -> None:
        """A loaded configuration cannot be changed."""
        config = load(tmp_path, base())
        with pytest.raises(pydantic.ValidationError):
            config.queue.maxsize = 1


class TestSubstitution:
    """${VAR} in values, at load."""

    def test_load_config_substitutes_inside_lists(self, tmp_path: Path) -> None:
        """A reference in a list nested in a list entry is replaced."""
        data = base(subscriptions=[subscription(topics=["a", "${SITE}/{topic}"])])
        config = load(tmp_path, data, {"SITE": "home"})
        assert config.subscriptions[0].topics == ("a", "home/{topic}")

    def test_load_config_uses_the_default(self, tmp_path: Path) -> None:
        """${VAR:-default} gives the default when VAR is unset."""
        config = load(tmp_path, base(broker={"host": "${MQTT_HOST:-broker.local}"}))
        assert config.broker.host == "broker.local"

    def test_load_config_converts_a_substituted_number(self, tmp_path: Path) -> None:
        """A substituted string becomes a number where the key wants one."""
        config = load(tmp_path, base(broker={"port": "${MQTT_PORT}"}), {"MQTT_PORT": "1884"})
        assert config.broker.port == 1884

    def test_load_config_converts_a_substituted_boolean(self, tmp_path: Path) -> None:
        """A substituted 'true' becomes a boolean where the key wants one."""
        tls = load(tmp_path, base(broker={"tls": {"insecure": "${INSECURE:-true}"}})).broker.tls
        assert tls is not None
        assert tls.insecure is True

    def test_load_config_keeps_double_dollar_literal(self, tmp_path: Path) -> None:
        """$$ is a literal $."""
        config = load(tmp_path, base(broker={"password": "pa$$word"}))
        assert config.broker.password is not None
        assert config.broker.password.get_secret_value() == "pa$word"

    def test_load_config_names_the_key_of_a_missing_variable(self, tmp_path: Path) -> None:
        """An unset variable without default is an error at its key path."""
        assert error(tmp_path, base(broker={"password": "${MQTT_PASSWORD}"})) == (
            "broker.password: environment variable 'MQTT_PASSWORD' is not set"
            " (write ${MQTT_PASSWORD:-default} to give a default)"
        )

    def test_load_config_names_a_list_index_of_a_missing_variable(self, tmp_path: Path) -> None:
        """The key path of a missing variable includes list indexes."""
        data = base(collectors=[collector(), collector(key="b", topics=["x", "${T}"])])
        assert error(tmp_path, data).startswith("collectors[1].topics[1]: environment variable")

    def test_load_config_cannot_inject_yaml(self, tmp_path: Path) -> None:
        """A value that looks like YAML stays one string."""
        config = load(tmp_path, base(broker={"username": "${U}"}), {"U": "a\nport: 1"})
        assert (config.broker.username, config.broker.port) == ("a\nport: 1", 1883)

    def test_load_config_reads_the_process_environment_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without environ, os.environ is used."""
        monkeypatch.setenv("MQTT_COLLECTOR_TEST_HOST", "from-env")
        path = write(tmp_path, base(broker={"host": "${MQTT_COLLECTOR_TEST_HOST}"}))
        assert load_config(path).broker.host == "from-env"


class TestWarnings:
    """Routes that cannot carry anything."""

    def test_load_config_warns_of_a_topic_no_subscription_produces(self, tmp_path: Path) -> None:
        """A collector topic no template can render gives one warning line."""
        data = base(
            subscriptions=[subscription(filter="sensors/+/temperature", topics=["temperature"])],
            collectors=[collector(topics=["temperature", "humidity"])],
        )
        config = load(tmp_path, data)
        assert config.warnings == (
            (
                f"{config.path}: collectors[0].topics[1]: topic 'humidity' is produced by no"
                " subscription"
            ),
        )

    def test_load_config_warns_of_a_subscription_feeding_nothing(self, tmp_path: Path) -> None:
        """A subscription whose Payload topics no collector takes gives one warning line."""
        data = base(
            subscriptions=[subscription(), subscription(filter="other/+", topics=["other"])]
        )
        config = load(tmp_path, data)
        assert config.warnings == (
            f"{config.path}: subscriptions[1]: messages on 'other/+' reach no collector",
        )

    def test_load_config_gives_no_warning_when_every_route_works(self, tmp_path: Path) -> None:
        """Templates with captures and {topic} count as producing what they can."""
        data = base(
            subscriptions=[subscription(filter="sensors/+/temperature", topics=["site/{1}"])],
            collectors=[collector(topics=["site/kitchen"])],
        )
        assert load(tmp_path, data).warnings == ()


def _keys(model: type[BaseModel]) -> set[str]:
    """Every key of a configuration model and the sections inside it."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= _keys(candidate)
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    keys |= _keys(inner)
    return keys


class TestExample:
    """config/example.yaml, which documents every key."""

    def test_example_loads_without_warnings(self) -> None:
        """The example is valid as shipped, with an empty environment, and every route works."""
        config = load_config(EXAMPLE, environ={})
        assert config.warnings == ()

    def test_example_mentions_every_key(self) -> None:
        """Each key of every section appears in the example, set or commented out."""
        text = EXAMPLE.read_text(encoding="utf-8")
        missing = sorted(key for key in _keys(Config) if f"{key}:" not in text)
        assert missing == []

    def test_example_walk_finds_nested_sections(self) -> None:
        """The key walk reaches sections inside lists and optional sections."""
        assert {"insecure", "max_body_bytes", "max_backoff", "listen"} <= _keys(Config)
