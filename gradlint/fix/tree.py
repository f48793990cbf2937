"""The module as libcst sees it, with what a fix needs to find its statements by a finding's location.

The analysis runs on `ast` and speaks in `Location`s (1-based columns); libcst keeps every comment,
blank line, tab and line ending, so fixes are written on its tree. This module is the bridge: the
statement, call or loop at a location, the function it is in, and the block around it.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator, Mapping
from typing import cast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, ParentNodeProvider, PositionProvider

from gradlint.core import Location

Block = (cst.Module, cst.IndentedBlock)
Loop = (cst.For, cst.While)


class Tree:
    """A parsed module: libcst for rewriting, `ast` for the names a fix may use."""

    def __init__(self, text: str) -> None:
        self.module = cst.parse_module(text)
        # No copy: the nodes the edits name must be the nodes of `self.module`.
        wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        metadata = wrapper.resolve_many([PositionProvider, ParentNodeProvider])  # one walk for both
        # resolve_many's mapping is typed loosely: these are what the two providers give.
        self.positions = cast("Mapping[cst.CSTNode, CodeRange]", metadata[PositionProvider])
        self.parents = cast("Mapping[cst.CSTNode, cst.CSTNode]", metadata[ParentNodeProvider])
        self.syntax = ast.parse(text)
        self._module_names: set[str] | None = None
        self._function_names: dict[int, set[str]] = {}
        self.by_span: dict[tuple[int, int, int, int], list[cst.CSTNode]] = {}
        self.loops: dict[tuple[int, int], cst.For | cst.While] = {}
        for node, where in self.positions.items():
            self.by_span.setdefault(span(where), []).append(node)
            if isinstance(node, Loop):
                self.loops[(where.start.line, where.start.column)] = node

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def nodes_at(self, location: Location) -> list[cst.CSTNode]:
        key = (location.line, location.col - 1, location.end_line, location.end_col - 1)
        return self.by_span.get(key, [])

    def statement_at(self, location: Location) -> cst.SimpleStatementLine | None:
        """The line statement that is exactly the event at `location` (`optimizer.step()` alone on its
        line), or None: a `;`-joined line or an event inside a larger expression is not ours to move."""
        for node in self.nodes_at(location):
            if isinstance(node, cst.BaseSmallStatement):
                line = self.parents.get(node)
                if isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1:
                    return line
        return None

    def call_at(self, location: Location) -> cst.Call | None:
        return next((node for node in self.nodes_at(location) if isinstance(node, cst.Call)), None)

    def loop_at(self, location: Location) -> cst.For | cst.While | None:
        return self.loops.get((location.line, location.col - 1))

    def clear_unit(self, location: Location) -> cst.BaseStatement | None:
        """What moves when a clear moves: its line, or the whole `for p in ...: p.grad = None` loop."""
        line = self.statement_at(location)
        if line is None:
            return None
        block = self.parents.get(line)
        if not isinstance(block, cst.IndentedBlock):
            return line
        owner = self.parents.get(block)
        if isinstance(owner, cst.For) and len(block.body) == 1 and isinstance(line.body[0], cst.Assign):
            return owner if owner.orelse is None else None
        return line

    def removable(self, statement: cst.BaseStatement) -> bool:
        """Whether `statement` can go without emptying its block (an `if` left with only `pass`
        would keep a test that no longer guards anything: not a shape to guess at)."""
        block = self.block_of(statement)
        return block is not None and len(block.body) > 1

    def always_reached(self, statement: cst.BaseStatement, loop: cst.For | cst.While) -> bool:
        """`statement` runs on every iteration of `loop` that goes on: it sits in the loop's body
        (inside `with` blocks at most) and no `continue` can skip it."""
        for ancestor in self.ancestors(statement):
            if ancestor is loop:
                return not skips_iterations(loop)
            if not isinstance(ancestor, (cst.IndentedBlock, cst.With)):
                return False
        return False

    def block_of(self, statement: cst.CSTNode) -> cst.Module | cst.IndentedBlock | None:
        block = self.parents.get(statement)
        return block if isinstance(block, Block) else None

    def next_statement(self, statement: cst.BaseStatement) -> cst.BaseStatement | None:
        block = self.block_of(statement)
        if block is None:
            return None
        body = list(block.body)
        index = next(i for i, node in enumerate(body) if node is statement)
        return body[index + 1] if index + 1 < len(body) else None

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        while node in self.parents:
            parent = self.parents[node]
            yield parent
            node = parent

    def function_of(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        """The innermost function around `node`; None at module level (a lambda is no function here)."""
        return next((a for a in self.ancestors(node) if isinstance(a, cst.FunctionDef)), None)

    def function_at(self, location: Location) -> cst.FunctionDef | bool | None:
        """The function holding `location`; False when no node there is known."""
        nodes = self.nodes_at(location)
        return self.function_of(nodes[0]) if nodes else False

    def inside(self, node: cst.CSTNode, outer: cst.CSTNode) -> bool:
        return any(a is outer for a in self.ancestors(node))

    def bound_names(self, line: int) -> set[str]:
        """Names a new expression on `line` may use: the module's, the enclosing functions', builtins."""
        if self._module_names is None:
            self._module_names = set(dir(builtins)) | assigned(self.syntax.body)
        names = set(self._module_names)
        for function in enclosing_functions(self.syntax, line):
            if id(function) not in self._function_names:
                arguments = function.args
                every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
                self._function_names[id(function)] = {a.arg for a in every} | assigned(function.body)
            names |= self._function_names[id(function)]
        return names


def enclosing_functions(module: ast.Module, line: int) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions whose lines hold `line`, outermost first; only those are walked into."""
    pending: list[ast.AST] = [module]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            first = getattr(child, "lineno", None)
            if first is not None and not first <= line <= (getattr(child, "end_lineno", None) or first):
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield child
            pending.append(child)


def skips_iterations(loop: cst.For | cst.While) -> bool:
    """A `continue` of this loop (not of a loop inside it) is somewhere in its body."""

    class Finder(cst.CSTVisitor):
        found = False

        def visit_Continue(self, node: cst.Continue) -> None:
            self.found = True

        def visit_For(self, node: cst.For) -> bool:
            return False  # its continue is its own

        def visit_While(self, node: cst.While) -> bool:
            return False

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False

    finder = Finder()
    loop.body.visit(finder)
    return finder.found


def assigned(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def span(where: CodeRange) -> tuple[int, int, int, int]:
    return where.start.line, where.start.column, where.end.line, where.end.column
