"""The mutation check's test selection (tests/mutation/covering.py): which lines a mutant changed, whether
the tests that ran them are enough, and the node ids read back from coverage contexts."""

from __future__ import annotations

import textwrap

from tests.mutation.covering import _node_id, changed_lines, statement_spans

SOURCE = textwrap.dedent('''\
    LIMIT = 8 * 1024


    def outer(x, y=3):
        if x > LIMIT:
            return [
                x,
                y,
            ]
        return x


    class Box:
        SIZE = 2

        def method(self):
            return self.SIZE + 1
''')


def test_a_one_line_mutant_changes_that_line_only() -> None:
    mutated = SOURCE.replace("if x > LIMIT:", "if x >= LIMIT:")
    assert changed_lines(SOURCE, mutated) == {5}
    assert changed_lines(SOURCE, SOURCE) == set()


def test_a_change_inside_a_function_body_selects_its_innermost_statement() -> None:
    assert statement_spans(SOURCE, {10}) == [(10, 10)]  # return x
    assert statement_spans(SOURCE, {8}) == [(6, 9)]  # inside a multi-line return: the whole statement
    assert statement_spans(SOURCE, {5}) == [(5, 9)]  # an if's test: the whole if, its body included
    assert statement_spans(SOURCE, {17}) == [(17, 17)]  # a method's body


def test_a_change_run_at_import_asks_for_every_test() -> None:
    assert statement_spans(SOURCE, {1}) is None  # a module constant
    assert statement_spans(SOURCE, {4}) is None  # a default argument, evaluated when the def runs
    assert statement_spans(SOURCE, {14}) is None  # a class attribute
    assert statement_spans(SOURCE, {2}) is None  # a blank line: no statement holds it
    assert statement_spans(SOURCE, {10, 1}) is None  # any one of several


def test_node_ids_are_read_back_whole_from_the_plugin_and_from_a_child_process() -> None:
    assert _node_id("tests/t.py::test_x[body3-not valid msgpack]") == "tests/t.py::test_x[body3-not valid msgpack]"
    assert _node_id("tests/t.py::test_x[a b] (call)") == "tests/t.py::test_x[a b]"
    assert _node_id("tests/t.py::test_y (setup)") == "tests/t.py::test_y"
    assert _node_id("|tests/t.py::test_z") == "tests/t.py::test_z"
    assert _node_id("") == ""
