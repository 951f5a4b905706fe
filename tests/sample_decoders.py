"""User decoders the decode tests name by dotted path, e.g. ``tests.sample_decoders:decimal``."""

from __future__ import annotations

import asyncio

NOT_CALLABLE = 42


def decimal(body: bytes, topic: str) -> dict[str, object]:
    """Decode a decimal integer; anything else raises ValueError (int's own message)."""
    return {"level": topic.rpartition("/")[2], "value": int(body)}


def one_argument(body: bytes) -> bytes:
    """A function that takes the body alone: not a decoder."""
    return body


async def coroutine_decoder(body: bytes, topic: str) -> bytes:
    """An async function: refused at load, a decoder must be synchronous."""
    return body


class AsyncDecoder:
    """A class whose instances have an async ``__call__``: refused at load too."""

    async def __call__(self, body: bytes, topic: str) -> bytes:
        """Return the body."""
        return body


async_instance = AsyncDecoder()


async def _value() -> int:
    return 1


def returns_coroutine(body: bytes, topic: str) -> object:
    """A plain function that returns a coroutine (a hidden async decoder)."""
    return _value()


class DecoderFault(BaseException):
    """A BaseException that is no Exception, as a careless decoder may raise."""


def raises_base_exception(body: bytes, topic: str) -> object:
    """Raise a BaseException subclass that is not an Exception."""
    raise DecoderFault("not an Exception")


def raises_cancelled(body: bytes, topic: str) -> object:
    """Raise CancelledError from synchronous code: the decoder's own, not a cancellation."""
    raise asyncio.CancelledError


def raises_system_exit(body: bytes, topic: str) -> object:
    """Ask the process to exit."""
    raise SystemExit(3)


def raises_keyboard_interrupt(body: bytes, topic: str) -> object:
    """Stand for Ctrl-C arriving while the decoder runs."""
    raise KeyboardInterrupt


class Unprintable(Exception):  # noqa: N818 - named for what it is
    """An exception whose ``str()`` fails."""

    def __str__(self) -> str:
        """Fail, as a broken ``__str__`` does."""
        raise RuntimeError("no text")


def raises_unprintable(body: bytes, topic: str) -> object:
    """Raise an exception that cannot be turned into text."""
    raise Unprintable


def quotes_the_body(body: bytes, topic: str) -> object:
    """Raise an exception whose message quotes the whole body, over several lines."""
    raise ValueError(f"cannot parse\n{body!r}\nat all")
