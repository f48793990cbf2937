"""A fix is a few edits of whole statements (remove, insert beside another, replace an expression).

Edits name nodes of one parsed `Tree`; libcst trees never change, so any subset of the fixes found on
a tree can be applied to it, and the fixes are tried together first, then one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

import libcst as cst

from gradlint.core import Location


@dataclass(frozen=True, eq=False)
class Remove:
    statement: cst.BaseStatement


@dataclass(frozen=True, eq=False)
class Insert:
    """`statement` goes right after `anchor` (or right before it), in the anchor's block."""

    anchor: cst.BaseStatement
    statement: cst.BaseStatement
    after: bool = True


@dataclass(frozen=True, eq=False)
class Replace:
    old: cst.CSTNode
    new: cst.CSTNode
    statement: cst.BaseStatement  # the statement `old` is in: two fixes of one statement conflict


Edit = Union[Remove, Insert, Replace]


@dataclass(frozen=True, eq=False)
class Fix:
    """The edits that fix one finding (by its code and location)."""

    code: str
    location: Location
    safe: bool
    edits: tuple[Edit, ...] = field(default=())

    def statements(self) -> set[int]:
        """The statements this fix touches; fixes that share one are not applied in the same pass."""
        touched: set[int] = set()
        for edit in self.edits:
            if isinstance(edit, Remove):
                touched.add(id(edit.statement))
            elif isinstance(edit, Insert):
                touched.add(id(edit.anchor))
            else:
                touched.add(id(edit.statement))
        return touched


def moved(statement: cst.BaseStatement) -> cst.BaseStatement:
    """A statement to insert elsewhere: the comment lines above it stay where they were."""
    return statement.with_changes(leading_lines=())


def leading_lines(statement: cst.BaseStatement) -> Sequence[cst.EmptyLine]:
    # Every statement has them (SimpleStatementLine and each compound statement); BaseStatement
    # does not declare them.
    return getattr(statement, "leading_lines", ())


def new_statement(code: str) -> cst.BaseStatement:
    return cst.parse_statement(code)


def disjoint(fixes: Iterable[Fix]) -> list[Fix]:
    """The fixes that can share a pass: the first of any that touch the same statement."""
    chosen: list[Fix] = []
    taken: set[int] = set()
    for fix in fixes:
        if fix.statements() & taken:
            continue
        chosen.append(fix)
        taken |= fix.statements()
    return chosen


def apply(module: cst.Module, fixes: Sequence[Fix]) -> str:
    edits = [edit for fix in fixes for edit in fix.edits]
    return module.visit(_Rewrite(edits)).code


class _Rewrite(cst.CSTTransformer):
    def __init__(self, edits: Sequence[Edit]) -> None:
        super().__init__()
        self.removed = {id(e.statement) for e in edits if isinstance(e, Remove)}
        self.before: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        self.after: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        for edit in edits:
            if isinstance(edit, Insert):
                (self.after if edit.after else self.before)[id(edit.anchor)].append(edit.statement)
        self.replaced = {id(e.old): e.new for e in edits if isinstance(e, Replace)}

    def on_leave(self, original_node, updated_node):
        if id(original_node) in self.replaced:
            return self.replaced[id(original_node)]
        return super().on_leave(original_node, updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, footer = self.rebuild(original_node.body, updated_node.body, updated_node.footer)
        return updated_node.with_changes(body=body, footer=footer)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body, footer = self.rebuild(original_node.body, updated_node.body, updated_node.footer)
        if not body:  # a block cannot be empty: the statement that moved away leaves a `pass`
            body = [cst.SimpleStatementLine([cst.Pass()])]
        return updated_node.with_changes(body=body, footer=footer)

    def rebuild(
        self,
        original: Sequence[cst.BaseStatement],
        updated: Sequence[cst.BaseStatement],
        footer: Sequence[cst.EmptyLine],
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        body: list[cst.BaseStatement] = []
        # Comment and blank lines above a removed statement are not the fix's to delete: they go
        # above whatever comes next.
        carried: list[cst.EmptyLine] = []

        def emit(statement: cst.BaseStatement) -> None:
            nonlocal carried
            if carried:
                above = [*carried, *leading_lines(statement)]
                statement = statement.with_changes(leading_lines=above)
                carried = []
            body.append(statement)

        for old, new in zip(original, updated):
            for inserted in self.before.get(id(old), ()):
                emit(inserted)
            if id(old) in self.removed:
                carried.extend(leading_lines(new))
            else:
                emit(new)
            for inserted in self.after.get(id(old), ()):
                emit(inserted)
        return body, [*carried, *footer]
