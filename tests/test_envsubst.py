"""Tests for ``${VAR}`` substitution in configuration values."""

from __future__ import annotations

import pytest

from mqtt_collector._config.envsubst import SubstitutionError, expand, substitute


class TestExpand:
    """expand(): one string."""

    def test_expand_replaces_a_set_variable(self) -> None:
        """${VAR} gives the variable's value."""
        assert expand("mqtt://${HOST}:1883", {"HOST": "broker"}) == "mqtt://broker:1883"

    def test_expand_replaces_several_variables(self) -> None:
        """Every reference in a string is replaced."""
        assert expand("${A}-${B}", {"A": "1", "B": "2"}) == "1-2"

    def test_expand_uses_the_default_when_unset(self) -> None:
        """${VAR:-default} gives the default when VAR is not set."""
        assert expand("${PORT:-1883}", {}) == "1883"

    def test_expand_uses_the_default_when_empty(self) -> None:
        """${VAR:-default} gives the default when VAR is empty, as the shell does."""
        assert expand("${PORT:-1883}", {"PORT": ""}) == "1883"

    def test_expand_prefers_the_value_to_the_default(self) -> None:
        """${VAR:-default} gives VAR's value when it is set."""
        assert expand("${PORT:-1883}", {"PORT": "8883"}) == "8883"

    def test_expand_accepts_an_empty_default(self) -> None:
        """${VAR:-} gives the empty string when VAR is unset."""
        assert expand("x${VAR:-}y", {}) == "xy"

    def test_expand_keeps_an_empty_set_variable(self) -> None:
        """${VAR} set to the empty string gives the empty string, not an error."""
        assert expand("a${VAR}b", {"VAR": ""}) == "ab"

    def test_expand_turns_double_dollar_into_one(self) -> None:
        """$$ is a literal $, and what follows it is not a reference."""
        assert expand("pa$$word$${HOME}", {"HOME": "/root"}) == "pa$word${HOME}"

    def test_expand_keeps_a_lone_dollar(self) -> None:
        """A $ not followed by { or $ is kept as it is."""
        assert expand("cost $5", {}) == "cost $5"

    def test_expand_does_not_expand_a_value_again(self) -> None:
        """A variable's value is not itself searched for references."""
        assert expand("${A}", {"A": "${B}", "B": "no"}) == "${B}"

    def test_expand_refuses_an_unset_variable(self) -> None:
        """${VAR} with VAR unset is an error naming the variable and how to give a default."""
        with pytest.raises(SubstitutionError) as caught:
            expand("${MQTT_PASSWORD}", {})
        assert str(caught.value) == (
            "environment variable 'MQTT_PASSWORD' is not set"
            " (write ${MQTT_PASSWORD:-default} to give a default)"
        )

    def test_expand_refuses_a_malformed_reference(self) -> None:
        """A ${ that is not ${NAME} or ${NAME:-default} is an error showing it."""
        with pytest.raises(SubstitutionError, match=r"invalid substitution '\$\{1ABC\}'"):
            expand("${1ABC}", {})

    def test_expand_refuses_an_unclosed_reference(self) -> None:
        """${NAME without its closing brace is an error."""
        with pytest.raises(SubstitutionError, match="invalid substitution"):
            expand("${NAME", {"NAME": "x"})


class TestSubstitute:
    """substitute(): a parsed YAML tree."""

    def test_substitute_replaces_strings_at_any_depth(self) -> None:
        """Strings inside mappings inside lists are replaced."""
        tree = {"a": [{"b": "${X}"}, "${X}"], "c": {"d": "${X:-no}"}}
        assert substitute(tree, {"X": "yes"}) == {"a": [{"b": "yes"}, "yes"], "c": {"d": "yes"}}

    def test_substitute_leaves_other_values_alone(self) -> None:
        """Numbers, booleans and null pass through unchanged."""
        tree = {"a": 1, "b": 2.5, "c": True, "d": None}
        assert substitute(tree, {}) == tree

    def test_substitute_leaves_keys_alone(self) -> None:
        """Only values are substituted, never mapping keys."""
        assert substitute({"${X}": "v"}, {"X": "k"}) == {"${X}": "v"}

    def test_substitute_does_not_change_its_input(self) -> None:
        """The tree given is not modified; a new one is returned."""
        tree = {"a": ["${X}"]}
        substitute(tree, {"X": "1"})
        assert tree == {"a": ["${X}"]}

    def test_substitute_keeps_a_value_one_string(self) -> None:
        """A value that looks like YAML stays a string: it cannot inject structure."""
        assert substitute({"a": "${X}"}, {"X": "b: [1, 2]\nc: 3"}) == {"a": "b: [1, 2]\nc: 3"}

    def test_substitute_names_the_path_of_a_missing_variable(self) -> None:
        """The error carries the key path, list indexes included."""
        tree = {"subscriptions": [{"filter": "a"}, {"topics": ["x", "${NOPE}"]}]}
        with pytest.raises(SubstitutionError) as caught:
            substitute(tree, {})
        assert caught.value.loc == ("subscriptions", 1, "topics", 1)
