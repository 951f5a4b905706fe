"""The daemon: transport, mapper, collector queue and acker, with error policy and metrics."""
