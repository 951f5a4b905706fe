"""Property tests: topic matching and templates against simple references written from the spec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter, validate_filter

# A small alphabet of levels so that random filters and topics match often, with the
# awkward cases in it: empty levels, '$' levels, non-ASCII and characters special to regexes.
LEVELS = ["", "$SYS", "$", "a", "b", "ab", "ü", "温度", "😀", "a.b", "x$"]
WILDCARDS = ["+", "#"]

quick = settings(deadline=None)


def reference_match(filter_: str, topic: str) -> tuple[str, ...] | None:
    """Match level by level, straight from MQTT 5 §4.7; slow and obvious on purpose."""
    if filter_.startswith("$share/"):
        filter_ = filter_.split("/", 2)[2]
    filter_levels = filter_.split("/")
    topic_levels = topic.split("/")
    # §4.7.2: wildcards at the first level do not match topics starting with '$'.
    if filter_levels[0] in WILDCARDS and topic.startswith("$"):
        return None
    captures: list[str] = []
    for index, level in enumerate(filter_levels):
        if level == "#":
            # §4.7.1.2: '#' matches the parent and any number of child levels.
            captures.append("/".join(topic_levels[index:]))
            return tuple(captures)
        if index >= len(topic_levels):
            return None
        if level == "+":
            captures.append(topic_levels[index])
        elif level != topic_levels[index]:
            return None
    if len(topic_levels) != len(filter_levels):
        return None
    return tuple(captures)


def reference_is_valid_filter(filter_: str) -> bool:
    """Say whether a filter is valid by §4.7.1 (for short ASCII filters: no length rule)."""
    if "\x00" in filter_:
        return False
    if filter_.startswith("$share/"):
        group, sep, filter_ = filter_[len("$share/") :].partition("/")
        if not sep or not group or "+" in group or "#" in group:
            return False
    if not filter_:
        return False
    levels = filter_.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


@st.composite
def filters(draw: st.DrawFn) -> str:
    """Draw a valid topic filter, sometimes with a trailing '#' or a $share prefix."""
    levels = draw(st.lists(st.sampled_from([*LEVELS, "+", "+"]), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    filter_ = "/".join(levels)
    if not filter_:
        filter_ = "+"
    if draw(st.integers(0, 9)) == 0:
        filter_ = f"$share/{draw(st.sampled_from(['g', 'workers', '$SYS']))}/{filter_}"
    return filter_


def topics() -> st.SearchStrategy[str]:
    """Draw a topic name from the level alphabet."""
    return (
        st.lists(st.sampled_from(LEVELS), min_size=1, max_size=6)
        .map("/".join)
        .map(lambda topic: topic or "a")
    )


@st.composite
def _filled_in(draw: st.DrawFn, filter_: str) -> str:
    """Draw the filter with its wildcards filled in with levels (maybe "", not a topic name)."""
    plain = filter_.split("/", 2)[2] if filter_.startswith("$share/") else filter_
    levels: list[str] = []
    for level in plain.split("/"):
        if level == "+":
            levels.append(draw(st.sampled_from(LEVELS)))
        elif level == "#":
            levels.extend(draw(st.lists(st.sampled_from(LEVELS), max_size=3)))
        else:
            levels.append(level)
    return "/".join(levels)


def topics_for(filter_: str) -> st.SearchStrategy[str]:
    """Draw a topic built by filling in the filter's wildcards, so that it usually matches."""
    return _filled_in(filter_).filter(bool)


@st.composite
def filter_and_topic(draw: st.DrawFn) -> tuple[str, str]:
    """Draw a filter and a topic that matches it about half of the time."""
    filter_ = draw(filters())
    topic = draw(st.one_of(topics_for(filter_), topics()))
    return filter_, topic


# A template piece: a literal text, a 1-based capture number, or None for {topic}.
Piece = str | int | None


@st.composite
def templates(draw: st.DrawFn, wildcards: int) -> list[Piece]:
    """Draw a template as a list of pieces, using only captures the filter has."""
    literal = st.text(alphabet="ab/{}$ü", min_size=1, max_size=4)
    field = st.one_of(st.none(), st.integers(1, wildcards)) if wildcards else st.none()
    return draw(st.lists(st.one_of(literal, field), min_size=1, max_size=5))


def template_text(pieces: list[Piece]) -> str:
    """Write pieces as template text, doubling braces in literals."""
    return "".join(
        piece.replace("{", "{{").replace("}", "}}")
        if isinstance(piece, str)
        else ("{topic}" if piece is None else f"{{{piece}}}")
        for piece in pieces
    )


def reference_render(pieces: list[Piece], topic: str, captures: tuple[str, ...]) -> str:
    """Expand pieces directly: literals as they are, captures and the topic substituted."""
    return "".join(
        piece if isinstance(piece, str) else (topic if piece is None else captures[piece - 1])
        for piece in pieces
    )


@quick
@given(filter_and_topic())
def test_match_agrees_with_reference(case: tuple[str, str]) -> None:
    """TopicFilter.match gives the reference's answer and captures."""
    filter_, topic = case
    assert TopicFilter(filter_).match(topic) == reference_match(filter_, topic)


@quick
@given(filters().flatmap(lambda f: st.tuples(st.just(f), topics_for(f))))
def test_match_accepts_filled_in_filters(case: tuple[str, str]) -> None:
    """A filled-in filter matches its topic, unless a leading wildcard meets a '$' topic."""
    filter_, topic = case
    compiled = TopicFilter(filter_)
    hidden = compiled.plain.split("/")[0] in WILDCARDS and topic.startswith("$")
    assert (compiled.match(topic) is None) == hidden


@quick
@given(st.data())
def test_match_leading_wildcard_hides_dollar_topics(data: st.DataObject) -> None:
    """A filter starting with a wildcard matches no '$' topic, even one it would otherwise match."""
    rest = data.draw(filters().filter(lambda f: not f.startswith("$share/")))
    filter_ = data.draw(st.sampled_from(["#", f"+/{rest}", f"$share/g/+/{rest}"]))
    filled = data.draw(_filled_in(rest))
    topic = f"{data.draw(st.sampled_from(['$SYS', '$', '$a']))}/{filled}"
    assert TopicFilter(filter_).match(topic) is None
    assert reference_match(filter_, topic) is None
    # The same topic without its '$' does match, so it is the '$' rule that refused it.
    assert TopicFilter(filter_).match(topic.replace("$", "x", 1)) is not None


@quick
@given(filter_and_topic())
def test_match_captures_one_per_wildcard(case: tuple[str, str]) -> None:
    """A match has exactly as many captures as the filter has wildcards."""
    filter_, topic = case
    compiled = TopicFilter(filter_)
    found = compiled.match(topic)
    if found is not None:
        assert len(found) == compiled.wildcards == len(compiled.kinds)


@quick
@given(st.text(alphabet="a/+#$\x00", max_size=8).map(lambda s: s.replace("$", "$share/", 1)))
def test_validate_filter_agrees_with_reference(filter_: str) -> None:
    """validate_filter rejects exactly what the reference rules reject."""
    try:
        validate_filter(filter_)
    except ValueError:
        assert not reference_is_valid_filter(filter_)
    else:
        assert reference_is_valid_filter(filter_)


@quick
@given(filters())
def test_generated_filters_are_valid(filter_: str) -> None:
    """The filter strategy draws only valid filters (so the other properties test something)."""
    validate_filter(filter_)


@quick
@given(st.data())
def test_render_agrees_with_reference(data: st.DataObject) -> None:
    """TopicTemplate.render expands like the reference."""
    filter_, topic = data.draw(filter_and_topic())
    compiled = TopicFilter(filter_)
    captures = compiled.match(topic)
    if captures is None:
        captures = tuple(data.draw(st.sampled_from(LEVELS)) for _ in range(compiled.wildcards))
    pieces = data.draw(templates(compiled.wildcards))
    template = TopicTemplate(template_text(pieces), wildcards=compiled.wildcards)
    assert template.render(topic, captures) == reference_render(pieces, topic, captures)


@quick
@given(st.data())
def test_could_produce_every_rendered_topic(data: st.DataObject) -> None:
    """could_produce is True for whatever a matching topic renders to: no false negatives."""
    filter_ = data.draw(filters())
    compiled = TopicFilter(filter_)
    topic = data.draw(topics_for(filter_))
    captures = compiled.match(topic)
    if captures is None:
        # Only a leading wildcard against a '$' topic fails to match a filled-in filter.
        assert topic.startswith("$")
        return
    template = TopicTemplate(
        template_text(data.draw(templates(compiled.wildcards))), wildcards=compiled.wildcards
    )
    assert template.could_produce(template.render(topic, captures), filter_=compiled)


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("a/#", "a", ("",)),
        ("+/#", "$SYS/a", None),
        ("a/+/b", "a//b", ("",)),
        ("$share/g/#", "a/b", ("a/b",)),
        ("a/b", "a/b/c", None),
        ("a/b/#", "a", None),
    ],
)
def test_reference_match_examples(
    filter_: str, topic: str, expected: tuple[str, ...] | None
) -> None:
    """The reference matcher itself gets the spec's examples right."""
    assert reference_match(filter_, topic) == expected
