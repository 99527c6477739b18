"""interruption_in: a stop told from an error, however a library wrapped it."""

from servicetrail.interruption import interruption_in


def raised_while_handling(stop: BaseException) -> BaseException:
    try:
        try:
            raise stop
        except BaseException:
            raise AssertionError("a library's clean-up, the stop in its context")  # noqa: B904
    except AssertionError as e:
        return e


def test_a_stop_is_found_itself_or_in_the_context_of_what_was_raised_while_handling_it():
    stop = KeyboardInterrupt()
    assert interruption_in(stop) is stop
    assert interruption_in(raised_while_handling(stop)) is stop


def test_an_error_raised_while_handling_another_error_is_no_stop():
    assert interruption_in(raised_while_handling(ValueError("no stop"))) is None
    assert interruption_in(RuntimeError("alone")) is None


def test_a_loop_of_contexts_ends():
    first, second = ValueError("one"), ValueError("two")
    first.__context__, second.__context__ = second, first
    assert interruption_in(first) is None
