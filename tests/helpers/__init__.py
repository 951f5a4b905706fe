"""The tests' shared helpers, one of each, named for what they do.

- :mod:`tests.helpers.scripted_broker`: the fake MQTT broker (scripted per connection, or
  accepting everything) for what a real Mosquitto cannot produce.
"""
