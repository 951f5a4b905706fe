"""The public surface of mqtt_collector: exactly what ``__all__`` names, sorted."""

from __future__ import annotations

import types

import mqtt_collector

# Every name the event-collector guide's API uses (design.md §1).
GUIDE_API = (
    "Collector",
    "CollectorEvent",
    "CollectorQueue",
    "Context",
    "Delivery",
    "Error",
    "EventPublisher",
    "LifecycleManager",
    "Ok",
    "Payload",
    "Processor",
    "QueueType",
    "Result",
    "ResultList",
    "Router",
    "SimpleRouter",
)


def test_all_is_sorted() -> None:
    """__all__ is kept in sorted order."""
    assert mqtt_collector.__all__ == sorted(mqtt_collector.__all__)


def test_all_matches_public_names() -> None:
    """__all__ names exactly the public names the package defines, plus __version__."""
    public = {
        name
        for name, value in vars(mqtt_collector).items()
        # Submodules appear as attributes only as a side effect of being imported.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(mqtt_collector.__all__) == public | {"__version__"}
    assert len(mqtt_collector.__all__) == len(set(mqtt_collector.__all__))


def test_all_includes_guide_api() -> None:
    """Every name of the guide's API is exported."""
    missing = [name for name in GUIDE_API if name not in mqtt_collector.__all__]
    assert missing == []


def test_version_is_string() -> None:
    """__version__ is a non-empty string."""
    assert isinstance(mqtt_collector.__version__, str)
    assert mqtt_collector.__version__
