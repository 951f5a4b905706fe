"""Unit tests for MQTT topic filters, topic names and Payload-topic templates."""

from __future__ import annotations

import pytest

from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import (
    TopicFilter,
    overlaps,
    split_shared,
    validate_filter,
    validate_topic_name,
)


class TestValidateFilter:
    """validate_filter accepts what MQTT 5 §4.7 allows and names what is wrong otherwise."""

    @pytest.mark.parametrize(
        "filter_",
        [
            "a",
            "a/b/c",
            "#",
            "+",
            "a/#",
            "+/+",
            "a/+/b/#",
            "/",
            "a//b",
            "/#",
            "$SYS/#",
            "$SYS/broker/+",
            "сенсор/温度/+",
            "$share/group/a/+",
            "$share/g/#",
            "$share",
            "a" * 65535,
        ],
    )
    def test_validate_filter_accepts_valid(self, filter_: str) -> None:
        """A valid filter passes silently."""
        validate_filter(filter_)

    def test_validate_filter_rejects_empty(self) -> None:
        """An empty filter is rejected (spec §4.7.3)."""
        with pytest.raises(ValueError, match=r"^invalid topic filter '': must not be empty$"):
            validate_filter("")

    @pytest.mark.parametrize("filter_", ["a/#/b", "#/a", "#/#", "#/"])
    def test_validate_filter_rejects_hash_not_last(self, filter_: str) -> None:
        """A '#' level that is not the last level is rejected."""
        with pytest.raises(ValueError, match=r"'#' must be the last level \(level \d+: '#'\)"):
            validate_filter(filter_)

    @pytest.mark.parametrize("filter_", ["a#", "a/b#", "#a", "a/##", "a/+#"])
    def test_validate_filter_rejects_hash_sharing_level(self, filter_: str) -> None:
        """A '#' sharing its level with other characters is rejected."""
        with pytest.raises(ValueError, match=r"'#' must be alone in its level"):
            validate_filter(filter_)

    @pytest.mark.parametrize("filter_", ["a+/b", "+a", "a/b+", "++", "a/x+y/c"])
    def test_validate_filter_rejects_plus_sharing_level(self, filter_: str) -> None:
        """A '+' sharing its level with other characters is rejected."""
        with pytest.raises(ValueError, match=r"'\+' must be alone in its level"):
            validate_filter(filter_)

    def test_validate_filter_message_names_filter_and_level(self) -> None:
        """The message quotes the filter and the offending level."""
        with pytest.raises(ValueError) as info:
            validate_filter("a/b+/c")
        assert str(info.value) == (
            "invalid topic filter 'a/b+/c': '+' must be alone in its level (level 2: 'b+')"
        )

    def test_validate_filter_rejects_nul(self) -> None:
        """A NUL character is rejected (spec §1.5.4)."""
        with pytest.raises(ValueError, match=r"contains a NUL character"):
            validate_filter("a/\x00/b")

    def test_validate_filter_rejects_lone_surrogate(self) -> None:
        """A string that is not well-formed UTF-8 is rejected."""
        with pytest.raises(ValueError, match=r"lone surrogate '\\ud800'"):
            validate_filter("a/\ud800")

    def test_validate_filter_rejects_too_long(self) -> None:
        """More than 65535 UTF-8 bytes is rejected, and the message stays short."""
        with pytest.raises(ValueError) as info:
            validate_filter("a" * 65536)
        message = str(info.value)
        assert "65536 UTF-8 bytes, more than the 65535 allowed" in message
        assert len(message) < 200

    def test_validate_filter_counts_bytes_not_characters(self) -> None:
        """The limit is on UTF-8 bytes: 32768 two-byte characters are too many."""
        with pytest.raises(ValueError, match=r"65536 UTF-8 bytes"):
            validate_filter("é" * 32768)

    def test_validate_filter_message_is_one_line(self) -> None:
        """A newline in the filter does not break the message over lines."""
        with pytest.raises(ValueError) as info:
            validate_filter("a\n+b")
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize("filter_", ["$share/g", "$share/g/"])
    def test_validate_filter_rejects_share_without_filter(self, filter_: str) -> None:
        """A shared subscription needs a filter after the group."""
        with pytest.raises(ValueError, match=r"needs '\$share/<group>/<filter>'"):
            validate_filter(filter_)

    def test_validate_filter_rejects_share_with_empty_group(self) -> None:
        """A shared subscription needs a non-empty group."""
        with pytest.raises(ValueError, match=r"share group after '\$share/' is empty"):
            validate_filter("$share//a/b")

    @pytest.mark.parametrize("filter_", ["$share/g+/a", "$share/+/a", "$share/#/a", "$share/g#/a"])
    def test_validate_filter_rejects_share_group_with_wildcard(self, filter_: str) -> None:
        """A share group must not contain wildcards."""
        with pytest.raises(ValueError, match=r"must not contain '\+' or '#'"):
            validate_filter(filter_)

    def test_validate_filter_rejects_share_with_invalid_filter(self) -> None:
        """The filter after the share group follows the ordinary rules."""
        with pytest.raises(ValueError, match=r"^invalid topic filter '\$share/g/a#': '#' must be"):
            validate_filter("$share/g/a#")


class TestValidateTopicName:
    """validate_topic_name accepts publishable topic names only."""

    @pytest.mark.parametrize("topic", ["a", "a/b", "/", "a//b", "$SYS/x", "dead/letters", "ü/€"])
    def test_validate_topic_name_accepts_valid(self, topic: str) -> None:
        """A valid topic name passes silently."""
        validate_topic_name(topic)

    @pytest.mark.parametrize(("topic", "wildcard"), [("a/+", "+"), ("a/#", "#"), ("x+y", "+")])
    def test_validate_topic_name_rejects_wildcards(self, topic: str, wildcard: str) -> None:
        """Wildcards are for filters, not names."""
        with pytest.raises(ValueError, match=rf"contains the wildcard '\{wildcard}'"):
            validate_topic_name(topic)

    def test_validate_topic_name_rejects_empty(self) -> None:
        """An empty topic name is rejected."""
        with pytest.raises(ValueError, match=r"^invalid topic name '': must not be empty$"):
            validate_topic_name("")

    def test_validate_topic_name_rejects_nul(self) -> None:
        """A NUL character is rejected."""
        with pytest.raises(ValueError, match=r"^invalid topic name 'a\\x00': contains a NUL"):
            validate_topic_name("a\x00")

    def test_validate_topic_name_rejects_too_long(self) -> None:
        """More than 65535 UTF-8 bytes is rejected."""
        with pytest.raises(ValueError, match=r"more than the 65535 allowed"):
            validate_topic_name("x" * 65536)


class TestSplitShared:
    """split_shared separates a share group from its filter."""

    def test_split_shared_returns_group_and_filter(self) -> None:
        """A $share filter gives its group and the plain filter."""
        assert split_shared("$share/workers/sensors/+/t") == ("workers", "sensors/+/t")

    def test_split_shared_plain_filter_has_no_group(self) -> None:
        """An ordinary filter comes back unchanged with no group."""
        assert split_shared("sensors/#") == (None, "sensors/#")

    def test_split_shared_needs_the_exact_prefix(self) -> None:
        """'$shared/...' and '$SHARE/...' are ordinary filters."""
        assert split_shared("$shared/g/a") == (None, "$shared/g/a")
        assert split_shared("$SHARE/g/a") == (None, "$SHARE/g/a")

    def test_split_shared_without_filter_part_is_not_shared(self) -> None:
        """'$share/g' has no filter part, so it is not split."""
        assert split_shared("$share/g") == (None, "$share/g")


class TestTopicFilter:
    """TopicFilter compiles a filter and matches topic names against it."""

    def test_topic_filter_rejects_invalid(self) -> None:
        """The constructor validates like validate_filter."""
        with pytest.raises(ValueError, match=r"^invalid topic filter 'a/#/b'"):
            TopicFilter("a/#/b")

    def test_topic_filter_attributes(self) -> None:
        """filter, plain, group, wildcards and kinds describe the filter."""
        f = TopicFilter("$share/g/a/+/b/#")
        assert (f.filter, f.plain, f.group, f.wildcards, f.kinds) == (
            "$share/g/a/+/b/#",
            "a/+/b/#",
            "g",
            2,
            ("+", "#"),
        )

    def test_topic_filter_plain_attributes(self) -> None:
        """An ordinary filter is its own plain filter and has no group."""
        f = TopicFilter("a/b")
        assert (f.filter, f.plain, f.group, f.wildcards, f.kinds) == ("a/b", "a/b", None, 0, ())

    def test_topic_filter_exact_match(self) -> None:
        """A filter without wildcards matches only the same topic, with no captures."""
        f = TopicFilter("a/b")
        assert f.match("a/b") == ()
        assert f.match("a/b/c") is None
        assert f.match("a") is None
        assert f.match("A/b") is None

    @pytest.mark.parametrize(
        ("filter_", "topic", "captures"),
        [
            ("a/+/c", "a/b/c", ("b",)),
            ("+/+", "x/y", ("x", "y")),
            ("+", "x", ("x",)),
            ("sensors/+/+/temperature", "sensors/s1/d2/temperature", ("s1", "d2")),
        ],
    )
    def test_topic_filter_plus_captures_one_level(
        self, filter_: str, topic: str, captures: tuple[str, ...]
    ) -> None:
        """Each '+' captures exactly one level."""
        assert TopicFilter(filter_).match(topic) == captures

    @pytest.mark.parametrize("topic", ["a/b/c/d", "a/c", "a", "a/b/x"])
    def test_topic_filter_plus_does_not_span_levels(self, topic: str) -> None:
        """A '+' never matches zero or several levels."""
        assert TopicFilter("a/+/c").match(topic) is None

    @pytest.mark.parametrize(
        ("topic", "captures"),
        [("a/b", ("b",)), ("a/b/c/d", ("b/c/d",)), ("a/", ("",)), ("a//", ("/",))],
    )
    def test_topic_filter_hash_captures_rest(self, topic: str, captures: tuple[str, ...]) -> None:
        """A trailing '#' captures the rest of the topic joined by '/'."""
        assert TopicFilter("a/#").match(topic) == captures

    def test_topic_filter_hash_matches_parent(self) -> None:
        """'a/#' matches 'a' itself, capturing '' (spec §4.7.1.2)."""
        assert TopicFilter("a/#").match("a") == ("",)

    def test_topic_filter_hash_after_plus_matches_parent(self) -> None:
        """'a/+/#' matches 'a/b', capturing 'b' and ''."""
        assert TopicFilter("a/+/#").match("a/b") == ("b", "")
        assert TopicFilter("a/+/#").match("a/b/c/d") == ("b", "c/d")

    @pytest.mark.parametrize("topic", ["ab", "b/a", "a b/c", "x/a/b"])
    def test_topic_filter_hash_needs_prefix_levels(self, topic: str) -> None:
        """'a/#' does not match topics whose first level is not 'a'."""
        assert TopicFilter("a/#").match(topic) is None

    def test_topic_filter_lone_hash_matches_everything(self) -> None:
        """'#' matches every ordinary topic, capturing it whole."""
        f = TopicFilter("#")
        assert f.match("a") == ("a",)
        assert f.match("a/b/c") == ("a/b/c",)
        assert f.match("/") == ("/",)

    @pytest.mark.parametrize("filter_", ["#", "+/#", "+", "+/broker/uptime", "+/+/+"])
    def test_topic_filter_leading_wildcard_skips_dollar_topics(self, filter_: str) -> None:
        """A filter starting with a wildcard does not match '$' topics (spec §4.7.2)."""
        assert TopicFilter(filter_).match("$SYS/broker/uptime") is None

    def test_topic_filter_leading_wildcard_skips_dollar_in_share(self) -> None:
        """The '$' rule applies to the filter after the $share prefix."""
        assert TopicFilter("$share/g/#").match("$SYS/x") is None
        assert TopicFilter("$share/g/#").match("x") == ("x",)

    def test_topic_filter_dollar_filter_matches_dollar_topics(self) -> None:
        """A filter spelling the '$' level out matches '$' topics."""
        assert TopicFilter("$SYS/#").match("$SYS/broker/uptime") == ("broker/uptime",)
        assert TopicFilter("$SYS/+/uptime").match("$SYS/broker/uptime") == ("broker",)
        assert TopicFilter("$SYS/broker").match("$SYS/broker") == ()

    def test_topic_filter_dollar_only_matters_first(self) -> None:
        """A '$' inside a later level is an ordinary character."""
        assert TopicFilter("+/+").match("a/$b") == ("a", "$b")
        assert TopicFilter("#").match("a$") == ("a$",)

    def test_topic_filter_empty_levels_are_levels(self) -> None:
        """Empty levels count as levels and can be captured as ''."""
        assert TopicFilter("a/+/b").match("a//b") == ("",)
        assert TopicFilter("+/+").match("/") == ("", "")
        assert TopicFilter("/+").match("/x") == ("x",)
        assert TopicFilter("+").match("/") is None
        assert TopicFilter("a//b").match("a//b") == ()
        assert TopicFilter("a//b").match("a/b") is None

    def test_topic_filter_unicode_levels(self) -> None:
        """Levels are compared as whole strings, whatever their script."""
        f = TopicFilter("дом/+/温度/#")
        assert f.match("дом/кухня/温度/a/😀") == ("кухня", "a/😀")
        assert f.match("дом/кухня/温/a") is None

    def test_topic_filter_regex_characters_are_literal(self) -> None:
        """Characters special to regexes match only themselves."""
        f = TopicFilter("a.b/(c)/+/[x]*")
        assert f.match("a.b/(c)/1/[x]*") == ("1",)
        assert f.match("aXb/(c)/1/[x]*") is None
        assert f.match("a.b/c/1/x") is None

    def test_topic_filter_newline_in_topic(self) -> None:
        """A newline is an ordinary character in a level."""
        assert TopicFilter("a/+/#").match("a/x\ny/p\nq") == ("x\ny", "p\nq")

    def test_topic_filter_is_case_sensitive(self) -> None:
        """Topic matching is case sensitive."""
        assert TopicFilter("a/+/C").match("a/b/c") is None
        assert TopicFilter("A/#").match("a/b") is None

    def test_topic_filter_equality_and_hash(self) -> None:
        """Filters written the same way are equal and hash alike."""
        assert TopicFilter("a/+") == TopicFilter("a/+")
        assert TopicFilter("a/+") != TopicFilter("a/#")
        assert len({TopicFilter("a/+"), TopicFilter("a/+")}) == 1

    def test_topic_filter_repr(self) -> None:
        """The repr shows the filter as given."""
        assert repr(TopicFilter("$share/g/a")) == "TopicFilter('$share/g/a')"


class TestOverlaps:
    """overlaps() says whether some topic matches both filters (in either order)."""

    @pytest.mark.parametrize(
        ("first", "second", "expected"),
        [
            ("a/+/c", "a/b/+", True),
            ("a/+/c", "a/b/d", False),
            ("a/b", "a/b", True),
            # '#', at any depth, and matching the parent level too
            ("#", "a/b/c", True),
            ("#", "+", True),
            ("#", "#", True),
            ("a/#", "a/b/c/d", True),
            ("a/#", "a", True),
            ("a/b/#", "a/+", True),
            ("a/#", "b/#", False),
            ("a/b/#", "a/c", False),
            # filters of different depth without '#' share no topic
            ("a/+", "a/+/b", False),
            ("a/b", "a/b/c", False),
            ("+", "+/+", False),
            # a leading wildcard matches no '$' topic
            ("#", "$SYS/x", False),
            ("+/x", "$SYS/x", False),
            ("+/#", "$SYS", False),
            ("$SYS/#", "$SYS/x", True),
            ("$SYS/+", "$SYS/x/y", False),
            ("a/+", "a/$x", True),
            # share groups: only within the same group
            ("$share/g/a/#", "$share/g/a/b", True),
            ("$share/g/a/#", "$share/h/a/b", False),
            ("$share/g/a/#", "a/b", False),
        ],
    )
    def test_overlaps(self, first: str, second: str, *, expected: bool) -> None:
        """Two filters overlap exactly when some topic matches both, whichever comes first."""
        assert overlaps(first, second) is expected
        assert overlaps(second, first) is expected


class TestTopicTemplate:
    """TopicTemplate parses Payload-topic templates and renders them per message."""

    def test_topic_template_renders_captures(self) -> None:
        """'{N}' is replaced by capture N, counting from 1."""
        t = TopicTemplate("site/{2}/dev/{1}", wildcards=2)
        assert t.render("sensors/s1/d2/temperature", ("d2", "s1")) == "site/s1/dev/d2"

    def test_topic_template_renders_topic(self) -> None:
        """'{topic}' is replaced by the whole MQTT topic."""
        t = TopicTemplate("mqtt:{topic}", wildcards=0)
        assert t.render("a/b/c", ()) == "mqtt:a/b/c"

    def test_topic_template_renders_constant(self) -> None:
        """A template without fields renders to itself."""
        assert TopicTemplate("temperature", wildcards=3).render("x", ("a", "b", "c")) == (
            "temperature"
        )

    def test_topic_template_renders_literal_braces(self) -> None:
        """'{{' and '}}' stand for literal braces."""
        t = TopicTemplate("{{{1}}}/{{topic}}/}}{{", wildcards=1)
        assert t.render("x/y", ("y",)) == "{y}/{topic}/}{"

    def test_topic_template_captures_with_braces_stay_verbatim(self) -> None:
        """Braces inside captures or the topic are not interpreted."""
        t = TopicTemplate("{1}|{topic}", wildcards=1)
        assert t.render("a/{0}", ("{0}",)) == "{0}|a/{0}"

    def test_topic_template_repeated_fields(self) -> None:
        """A field may appear several times."""
        t = TopicTemplate("{1}-{1}-{topic}-{topic}", wildcards=1)
        assert t.render("t", ("c",)) == "c-c-t-t"

    def test_topic_template_empty_capture(self) -> None:
        """An empty capture renders as nothing."""
        assert TopicTemplate("x/{1}/y", wildcards=1).render("a", ("",)) == "x//y"

    def test_topic_template_attributes(self) -> None:
        """The template text and capture count are kept as given."""
        t = TopicTemplate("a/{1}", wildcards=3)
        assert (t.template, t.wildcards) == ("a/{1}", 3)

    def test_topic_template_rejects_zero(self) -> None:
        """'{0}' is rejected: captures count from 1."""
        with pytest.raises(ValueError) as info:
            TopicTemplate("a/{0}", wildcards=2)
        assert str(info.value) == (
            "topic template 'a/{0}': '{0}' is not a capture; captures are numbered from {1}"
        )

    def test_topic_template_rejects_capture_beyond_wildcards(self) -> None:
        """A capture number above the filter's wildcard count is rejected."""
        with pytest.raises(ValueError) as info:
            TopicTemplate("{1}/{3}", wildcards=2)
        assert str(info.value) == (
            "topic template '{1}/{3}': '{3}' names capture 3 but the filter has only 2 wildcards"
        )

    def test_topic_template_rejects_capture_with_one_wildcard(self) -> None:
        """The message says 'wildcard' for a single one."""
        with pytest.raises(
            ValueError, match=r"names capture 2 but the filter has only 1 wildcard$"
        ):
            TopicTemplate("{2}", wildcards=1)

    def test_topic_template_rejects_capture_without_wildcards(self) -> None:
        """A capture in a template for a wildcard-free filter is rejected."""
        with pytest.raises(ValueError, match=r"names capture 1 but the filter has no wildcards$"):
            TopicTemplate("{1}", wildcards=0)

    @pytest.mark.parametrize("name", ["foo", "Topic", "", " 1", "1.0", "-1", "1:x", "topic!r"])
    def test_topic_template_rejects_unknown_names(self, name: str) -> None:
        """Only capture numbers and 'topic' are field names."""
        with pytest.raises(ValueError, match=r"unknown field '\{.*\}'; use \{1\}, \{2\}"):
            TopicTemplate(f"a/{{{name}}}", wildcards=2)

    def test_topic_template_rejects_leading_zero(self) -> None:
        """'{01}' is rejected with the spelling to use instead."""
        with pytest.raises(ValueError, match=r"write '\{1\}' instead of '\{01\}'"):
            TopicTemplate("{01}", wildcards=2)

    @pytest.mark.parametrize(
        ("template", "position"), [("{", 0), ("a/{1", 2), ("a{b{1}", 1), ("{{{", 2)]
    )
    def test_topic_template_rejects_unbalanced_open(self, template: str, position: int) -> None:
        """An unclosed '{' is rejected with its position."""
        with pytest.raises(ValueError, match=rf"unbalanced '\{{' at position {position} "):
            TopicTemplate(template, wildcards=2)

    @pytest.mark.parametrize(("template", "position"), [("}", 0), ("a/1}", 3), ("{1}}", 3)])
    def test_topic_template_rejects_unbalanced_close(self, template: str, position: int) -> None:
        """A lone '}' is rejected with its position."""
        with pytest.raises(ValueError, match=rf"unbalanced '\}}' at position {position} "):
            TopicTemplate(template, wildcards=2)

    def test_topic_template_rejects_empty(self) -> None:
        """An empty template is rejected."""
        with pytest.raises(ValueError, match=r"^topic template '': must not be empty$"):
            TopicTemplate("", wildcards=0)

    def test_topic_template_equality_and_hash(self) -> None:
        """Templates with the same text and capture count are equal and hash alike."""
        assert TopicTemplate("{1}", wildcards=1) == TopicTemplate("{1}", wildcards=1)
        assert TopicTemplate("{1}", wildcards=1) != TopicTemplate("{1}", wildcards=2)
        assert len({TopicTemplate("x", wildcards=0), TopicTemplate("x", wildcards=0)}) == 1

    def test_topic_template_repr(self) -> None:
        """The repr shows the template and its capture count."""
        assert repr(TopicTemplate("a/{1}", wildcards=1)) == "TopicTemplate('a/{1}', wildcards=1)"


class TestCouldProduce:
    """TopicTemplate.could_produce tells whether a Payload topic is reachable at all."""

    def test_could_produce_constant(self) -> None:
        """A constant template produces only itself."""
        t = TopicTemplate("temperature", wildcards=2)
        f = TopicFilter("sensors/+/+/temperature")
        assert t.could_produce("temperature", filter_=f)
        assert not t.could_produce("humidity", filter_=f)

    def test_could_produce_plus_capture_is_one_level(self) -> None:
        """A '+' capture cannot contain '/'."""
        t = TopicTemplate("site/{1}", wildcards=2)
        f = TopicFilter("sensors/+/+/temperature")
        assert t.could_produce("site/s1", filter_=f)
        assert t.could_produce("site/", filter_=f)
        assert not t.could_produce("site/s1/x", filter_=f)
        assert not t.could_produce("other/s1", filter_=f)

    def test_could_produce_hash_capture_spans_levels(self) -> None:
        """A '#' capture may contain '/'."""
        t = TopicTemplate("rest:{2}", wildcards=2)
        f = TopicFilter("a/+/#")
        assert t.could_produce("rest:x/y/z", filter_=f)
        assert t.could_produce("rest:", filter_=f)

    def test_could_produce_topic_follows_filter(self) -> None:
        """'{topic}' can be only a topic the filter matches."""
        t = TopicTemplate("{topic}", wildcards=1)
        f = TopicFilter("sensors/+")
        assert t.could_produce("sensors/x", filter_=f)
        assert not t.could_produce("sensors/x/y", filter_=f)
        assert not t.could_produce("temperature", filter_=f)

    def test_could_produce_topic_with_hash_filter(self) -> None:
        """'{topic}' for 'a/#' covers 'a' and everything below it."""
        t = TopicTemplate("x/{topic}", wildcards=1)
        f = TopicFilter("a/#")
        assert t.could_produce("x/a", filter_=f)
        assert t.could_produce("x/a/b/c", filter_=f)
        assert not t.could_produce("x/ab", filter_=f)

    def test_could_produce_no_wildcard_from_a_capture(self) -> None:
        """A capture is part of a topic name, so 'site/{1}' never yields 'site/+' or 'site/#'."""
        f = TopicFilter("sensors/+/#")
        assert not TopicTemplate("site/{1}", wildcards=2).could_produce("site/+", filter_=f)
        assert not TopicTemplate("site/{2}", wildcards=2).could_produce("site/a/#", filter_=f)
        assert TopicTemplate("site/+", wildcards=2).could_produce("site/+", filter_=f)

    def test_could_produce_no_wildcard_from_topic(self) -> None:
        """'{topic}' is a topic name: it never yields the filter's own wildcards."""
        t = TopicTemplate("{topic}", wildcards=2)
        assert not t.could_produce("sensors/+", filter_=TopicFilter("sensors/+"))
        assert not t.could_produce("sensors/a/#", filter_=TopicFilter("sensors/#"))

    def test_could_produce_uses_plain_filter_of_share(self) -> None:
        """The $share prefix is not part of any topic."""
        t = TopicTemplate("{topic}", wildcards=0)
        f = TopicFilter("$share/g/a/b")
        assert t.could_produce("a/b", filter_=f)
        assert not t.could_produce("$share/g/a/b", filter_=f)

    def test_could_produce_regex_characters_are_literal(self) -> None:
        """Literal parts are compared literally, not as regexes."""
        t = TopicTemplate("a.b*", wildcards=0)
        f = TopicFilter("x")
        assert t.could_produce("a.b*", filter_=f)
        assert not t.could_produce("aXbbb", filter_=f)

    def test_could_produce_rejects_filter_with_fewer_wildcards(self) -> None:
        """A template naming a capture the filter lacks is a caller error."""
        t = TopicTemplate("{2}", wildcards=2)
        with pytest.raises(ValueError, match=r"'\{2\}' names capture 2 but the filter 'a/\+'"):
            t.could_produce("x", filter_=TopicFilter("a/+"))
