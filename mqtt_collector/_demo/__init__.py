"""``mqtt-collector demo``: the real daemon on an embedded broker, fed by simulated sensors.

The top layer: it may import the daemon and everything below it. Its third-party needs
(amqtt, rich) come with the ``demo`` extra and are imported only when the demo runs.
"""
