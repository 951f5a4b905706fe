"""``python -m mqtt_collector``: the same as the ``mqtt-collector`` command."""

import sys

from mqtt_collector._cli import main

if __name__ == "__main__":
    sys.exit(main())
