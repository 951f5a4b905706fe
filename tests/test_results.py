"""Unit tests for Ok, Error and ResultList: matching, equality, repr and the list API."""

from __future__ import annotations

import pytest

from mqtt_collector import Error, Ok, Result, ResultList


def describe(result: Result) -> str:
    """Say which branch of a match statement ``result`` takes, and what it bound."""
    match result:
        case Ok(value):
            return f"ok:{value!r}"
        case Error(exc):
            return f"error:{exc!r}"
    return "unmatched"  # pragma: no cover - Result is Ok | Error


class TestOk:
    """Ok wraps a processor's return value."""

    def test_ok_matches_ok_case_binding_value(self) -> None:
        """`case Ok(value)` matches an Ok and binds its value."""
        assert describe(Ok({"a": 1})) == "ok:{'a': 1}"

    def test_ok_is_ok(self) -> None:
        """Ok.is_ok() is True."""
        assert Ok(0).is_ok() is True

    def test_ok_equal_by_value(self) -> None:
        """Two Oks with equal values are equal, and hash alike."""
        assert Ok([1, 2]) == Ok([1, 2])
        assert hash(Ok("x")) == hash(Ok("x"))

    def test_ok_unequal_for_different_value_or_type(self) -> None:
        """Ok differs from an Ok of another value and from a bare value."""
        assert Ok(1) != Ok(2)
        assert Ok(1) != 1
        assert Ok(None) != Error(ValueError())

    def test_ok_repr_shows_value(self) -> None:
        """repr(Ok) shows the value's repr."""
        assert repr(Ok("v")) == "Ok('v')"


class TestError:
    """Error wraps the exception that stopped a processor."""

    def test_error_matches_error_case_binding_exception(self) -> None:
        """`case Error(exc)` matches an Error and binds its exception."""
        exc = ValueError("bad")
        assert describe(Error(exc)) == "error:ValueError('bad')"

    def test_error_is_not_ok(self) -> None:
        """Error.is_ok() is False."""
        assert Error(ValueError()).is_ok() is False

    def test_error_equal_only_for_same_exception(self) -> None:
        """Errors are equal when they hold the same exception object, not an equal-looking one."""
        exc = ValueError("x")
        assert Error(exc) == Error(exc)
        assert hash(Error(exc)) == hash(Error(exc))
        assert Error(exc) != Error(ValueError("x"))

    def test_error_repr_shows_exception(self) -> None:
        """repr(Error) shows the exception's repr."""
        assert repr(Error(KeyError("k"))) == "Error(KeyError('k'))"


class TestResultList:
    """ResultList holds the results of every collector a payload reached."""

    def test_result_list_first_returns_first_result(self) -> None:
        """first() returns the first result."""
        exc = ValueError()
        assert ResultList([Ok(1), Error(exc)]).first() == Ok(1)

    def test_result_list_first_of_empty_is_ok_none(self) -> None:
        """first() of an empty list is Ok(None), the guide's 'empty Ok'."""
        assert ResultList().first() == Ok(None)
        assert ResultList([]).first() == Ok(None)

    def test_result_list_iter_works_with_for(self) -> None:
        """iter() can be looped over with a plain for."""
        results = ResultList([Ok(1), Ok(2)])
        assert [r for r in results.iter()] == [Ok(1), Ok(2)]  # noqa: C416 - the for loop is the test

    async def test_result_list_iter_works_with_async_for(self) -> None:
        """iter() can be looped over with async for, as the guide shows."""
        results = ResultList([Ok(1), Ok(2)])
        assert [r async for r in results.iter()] == [Ok(1), Ok(2)]

    def test_result_list_iterates_len_and_getitem(self) -> None:
        """A ResultList is iterable, sized and indexable."""
        exc = ValueError()
        results = ResultList([Ok("a"), Error(exc)])
        assert list(results) == [Ok("a"), Error(exc)]
        assert len(results) == 2
        assert results[1] == Error(exc)
        assert results[-1] == Error(exc)
        with pytest.raises(IndexError):
            results[2]

    def test_result_list_is_ok_only_without_errors(self) -> None:
        """is_ok() is True when no result is an Error (and for an empty list)."""
        assert ResultList([Ok(1), Ok(2)]).is_ok() is True
        assert ResultList().is_ok() is True
        assert ResultList([Ok(1), Error(ValueError())]).is_ok() is False

    def test_result_list_errors_returns_errors_in_order(self) -> None:
        """errors() returns only the Error results, in delivery order."""
        first, second = ValueError(), KeyError()
        results = ResultList([Error(first), Ok(1), Error(second)])
        assert results.errors() == [Error(first), Error(second)]

    async def test_result_list_await_returns_itself(self) -> None:
        """Awaiting a ResultList gives the same list back."""
        results = ResultList([Ok(1)])
        assert await results is results

    def test_result_list_equality_and_repr(self) -> None:
        """ResultLists compare by their results; repr shows them."""
        assert ResultList([Ok(1)]) == ResultList([Ok(1)])
        assert ResultList([Ok(1)]) != ResultList([Ok(2)])
        assert repr(ResultList([Ok(1)])) == "ResultList([Ok(1)])"
