"""The tests' shared helpers, one of each, named for what they do.

- :mod:`tests.helpers.mosquitto`: a private real Mosquitto broker (the fixtures in conftest).
- :mod:`tests.helpers.scripted_broker`: the fake MQTT broker (scripted per connection, or
  accepting everything) for what a real Mosquitto cannot produce.
- :mod:`tests.helpers.mqtt_client`: the test MQTT client (publish, subscribe and collect, close).
- :mod:`tests.helpers.daemon`: configs for a test broker, a daemon running in the test, waits,
  log capture; ``recorder_entry()`` is the ``collectors:`` entry of the recording collector.
- :mod:`tests.helpers.daemon_process`: ``mqtt-collector run`` as a subprocess.
- :mod:`tests.helpers.collectors`: the collectors tests name by dotted path: ``record`` with
  ``recording_lifecycle``, and ones that fail on purpose.
- :mod:`tests.helpers.config`: small config trees and loading them, for the config tests.
"""
