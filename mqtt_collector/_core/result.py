"""Results a processor returns, and the list of them an event resolves to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Generic, TypeAlias, TypeVar, final

__all__ = ["Error", "Ok", "Result", "ResultList"]

T = TypeVar("T")


@final
class Ok(Generic[T]):
    """A processor finished; ``value`` is what it returned (match with ``case Ok(value)``)."""

    __slots__ = ("value",)
    __match_args__ = ("value",)

    def __init__(self, value: T) -> None:
        """Wrap ``value``."""
        self.value = value

    def is_ok(self) -> bool:
        """Return True: this is a success."""
        return True

    def __repr__(self) -> str:
        """Show the value."""
        return f"Ok({self.value!r})"

    def __eq__(self, other: object) -> bool:
        """Compare by value."""
        return isinstance(other, Ok) and self.value == other.value

    def __hash__(self) -> int:
        """Hash by value."""
        return hash((Ok, self.value))


@final
class Error:
    """A processor failed; ``exception`` says why (match with ``case Error(exc)``)."""

    __slots__ = ("exception",)
    __match_args__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        """Wrap ``exception``."""
        self.exception = exception

    def is_ok(self) -> bool:
        """Return False: this is a failure."""
        return False

    def __repr__(self) -> str:
        """Show the exception."""
        return f"Error({self.exception!r})"

    def __eq__(self, other: object) -> bool:
        """Equal when the exceptions are the same object."""
        return isinstance(other, Error) and self.exception is other.exception

    def __hash__(self) -> int:
        """Hash by exception identity."""
        return hash((Error, id(self.exception)))


Result: TypeAlias = Ok[Any] | Error
"""What a processor returns: ``Ok(value)`` or ``Error(exception)``."""

_EMPTY_OK: Ok[None] = Ok(None)


class _ResultIterator:
    """Iterates a ResultList with ``for`` as well as ``async for``."""

    __slots__ = ("_it",)

    def __init__(self, results: list[Result]) -> None:
        self._it = iter(results)

    def __iter__(self) -> Iterator[Result]:
        return self._it

    def __next__(self) -> Result:
        return next(self._it)

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


class ResultList:
    """The results of every collector a payload was delivered to, in delivery order.

    Empty when the payload reached no collector; ``first()`` then gives ``Ok(None)``.
    A ResultList may be awaited (it returns itself), so ``await event.get_result()``
    works once the event is done.
    """

    __slots__ = ("results",)

    def __init__(self, results: list[Result] | None = None) -> None:
        """Hold ``results`` (the list itself, not a copy)."""
        self.results: list[Result] = [] if results is None else results

    def first(self) -> Result:
        """Return the first result, or ``Ok(None)`` when nothing was delivered."""
        return self.results[0] if self.results else _EMPTY_OK

    def iter(self) -> _ResultIterator:
        """Return an iterator usable with both ``for`` and ``async for``."""
        return _ResultIterator(self.results)

    def is_ok(self) -> bool:
        """Return True when no collector returned an Error."""
        return all(r.__class__ is Ok for r in self.results)

    def errors(self) -> list[Error]:
        """Return the Error results, in delivery order."""
        return [r for r in self.results if isinstance(r, Error)]

    def __iter__(self) -> Iterator[Result]:
        """Iterate the results."""
        return iter(self.results)

    def __len__(self) -> int:
        """Return how many collectors the payload reached."""
        return len(self.results)

    def __getitem__(self, index: int) -> Result:
        """Return one result by position."""
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        """Compare the results."""
        return isinstance(other, ResultList) and self.results == other.results

    __hash__ = None  # type: ignore[assignment]  # mutable container

    def __repr__(self) -> str:
        """Show the results."""
        return f"ResultList({self.results!r})"

    def __await__(self) -> Generator[Any, None, ResultList]:
        """Make ``await result_list`` give the list itself, without suspending."""
        return self
        yield  # unreachable; makes this a generator  # pragma: no cover
