"""The daemon: transport, mapper and collector queue, with error policy and metrics."""
