"""Socket options that find a dead broker while a transport has stopped reading.

While reading is paused the client cannot read the broker's PINGRESP, so its own keepalive
cannot tell a dead broker (or a cut network) from a quiet one; the kernel can. Every
transport sets these on its connection's socket.
"""

from __future__ import annotations

import socket

__all__ = ["keepalive_socket_options"]


def keepalive_socket_options(keepalive: int) -> list[tuple[int, int, int]]:
    """TCP keepalive and a bound on unacknowledged sends: about 2 x ``keepalive`` to a dead peer.

    Returns ``(level, option, value)`` triples for ``setsockopt``.
    """
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_KEEPIDLE", keepalive),
        ("TCP_KEEPINTVL", max(1, keepalive // 3)),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 2 * keepalive * 1000),  # milliseconds
    ):
        option = getattr(socket, name, None)  # Linux has them all; others some
        if option is not None:
            options.append((socket.IPPROTO_TCP, option, value))
    return options
