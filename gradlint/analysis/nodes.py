"""What is inside a syntax node, answered from one layout of the tree instead of a walk per question.

The analyses ask "which names, calls, attributes are inside this node" tens of thousands of times
per file, and `ast.walk` answers each time with a fresh breadth-first walk through Python-level
generators (half of all analysis time went there). The first question about a node here lays out
its whole subtree once, in preorder: then the nodes inside any node of it are one slice of a list,
and its children a stored list. The analyses never change a tree, so a layout never goes stale.
"""

from __future__ import annotations

import ast

LAYOUT = "_gradlint_layout"  # (preorder of the subtree laid out, start, end, children) on each node
DUMP = "_gradlint_dump"  # the node's `ast.dump`, once asked


def walk(node: ast.AST) -> list[ast.AST]:
    """`node` and every node inside it, each parent before its children (`ast.walk` has the same
    nodes, breadth first)."""
    order, start, end, _ = layout(node)
    return order[start:end]


def children(node: ast.AST) -> list[ast.AST]:
    """The nodes directly inside `node`, in `ast.iter_child_nodes` order. Not to be changed."""
    return layout(node)[3]


def dump(node: ast.AST) -> str:
    """`ast.dump(node)`, remembered on the node: the builder compares `if` tests by their dump in
    every copy of a block it splits, and a dump costs a walk of the test. (`ast.dump` reads only a
    node's fields, so what is remembered on the nodes inside never shows in it.)"""
    try:
        return getattr(node, DUMP)
    except AttributeError:
        shape = ast.dump(node)
        if node._fields:  # see lay_out(): `Load()` and the like are shared by every tree
            setattr(node, DUMP, shape)
        return shape


def layout(node: ast.AST) -> tuple[list[ast.AST], int, int, list[ast.AST]]:
    if not node._fields:
        return [node], 0, 1, []
    try:
        return getattr(node, LAYOUT)
    except AttributeError:
        lay_out(node)
        return getattr(node, LAYOUT)


def lay_out(root: ast.AST) -> None:
    # Recursive, twice as fast as with a stack of its own; a tree too deep for it is the
    # RecursionError that checker.allowing_deep_recursion already retries on a deeper stack.
    order: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        start = len(order)
        order.append(node)
        inside = child_nodes(node)
        for child in inside:
            visit(child)
        # `Load()`, `Add()` and the like are one object shared by every tree: none holds a layout,
        # which would keep some tree alive and is the same for all of them anyway
        if node._fields:
            setattr(node, LAYOUT, (order, start, len(order), inside))

    visit(root)


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """`ast.iter_child_nodes` as a list, without its generators (three times as fast)."""
    found: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            found.append(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST):
                    found.append(item)
    return found
