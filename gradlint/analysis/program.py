"""The program one analysis reads: the modules its entry points are in, the project modules their
calls reach, one index per module, and how a name in one module reaches a function or class in another.

A single file analysed alone (flake8's tree, `check_source`) is a program of one module with no
project: every call that leaves it is outside, as before. With a project, a call to a function or a
class of another project module is followed there, and every site is labelled with its module's path.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from gradlint.analysis import names
from gradlint.analysis.scope import ClassInfo, ModuleIndex
from gradlint.analysis.shapes import FunctionNode, assigned_names, module_statements
from gradlint.project import Module, Project


def lone_module(tree: ast.Module, lines: list[str]) -> Module:
    """A module known only by its tree: no file, no imports followed."""
    return Module("<module>", "", list(lines), tree, {}, [], None)


@dataclass(frozen=True)
class ClassRef:
    """A class and the module it is defined in."""

    info: ClassInfo
    module: Module


class Program:
    def __init__(self, roots: list[Module], project: Project | None = None) -> None:
        self.roots = roots
        self.project = project
        self.indexes: dict[Module, ModuleIndex] = {}
        self.module_of: dict[ast.AST, Module] = {}
        self._globals: dict[Module, frozenset[str]] = {}
        self._class_methods: frozenset[str] | None = None
        for module in roots:
            self.index(module)
        if project is not None:
            self.load_imports(roots)

    def load_imports(self, roots: list[Module]) -> None:
        """Every project module the roots import, directly or not: which classes exist, and so which
        calls may run a method of one, must be known before any function's flow is built."""
        assert self.project is not None
        pending = list(roots)
        seen = set(pending)
        while pending:
            module = pending.pop()
            for name in [*module.imports.values(), *module.star_imports]:
                found = self.project.imported(module, name)
                if found is not None and found.module not in seen:
                    seen.add(found.module)
                    self.index(found.module)
                    pending.append(found.module)

    def class_methods(self) -> frozenset[str]:
        """Names of the methods the program's classes define (`__call__` included)."""
        if self._class_methods is None:
            self._class_methods = frozenset(
                name for index in self.indexes.values() for info in index.classes.values() for name in info.methods
            )
        return self._class_methods

    def globals(self, module: Module) -> frozenset[str]:
        if module not in self._globals:
            self._globals[module] = frozenset(assigned_names(module_statements(module.tree)))
        return self._globals[module]

    def index(self, module: Module) -> ModuleIndex:
        if module not in self.indexes:
            index = ModuleIndex.of(module.tree, whole=self.project is not None)
            self.indexes[module] = index
            for function in index.all_functions():
                self.module_of[function] = module
            self._class_methods = None
        return self.indexes[module]

    def path(self, module: Module) -> str | None:
        """What sites of `module` are labelled with: None when the program is one file's."""
        return module.path if self.project is not None else None

    def imported_names(self, module: Module) -> frozenset[str]:
        """Names through which a call in `module` may reach another project module."""
        if self.project is None:
            return frozenset()
        return frozenset(name.split(".")[0] for name in module.imports) | frozenset(
            self.index(module).classes
        )

    # --- names to definitions -----------------------------------------------------------------
    def definition(self, module: Module, dotted: str):
        if self.project is None or not dotted:
            return None
        found = self.project.lookup(module, dotted)
        if found is None or found.node is None:
            return None
        return found

    def function(self, module: Module, dotted: str):
        """The project function `dotted` names in `module` (imported or its own), if any."""
        found = self.definition(module, dotted)
        if found is None or not isinstance(found.node, FunctionNode):
            return None
        self.index(found.module)
        return found.node

    def class_named(self, module: Module, dotted: str) -> ClassRef | None:
        """The project class `dotted` names in `module`: its own or one an import binds."""
        index = self.index(module)
        if dotted in index.classes:
            return ClassRef(index.classes[dotted], module)
        found = self.definition(module, dotted)
        if found is None or not isinstance(found.node, ast.ClassDef):
            return None
        info = self.index(found.module).classes.get(found.node.name)
        return ClassRef(info, found.module) if info is not None and info.node is found.node else None

    def method(self, ref: ClassRef, name: str, depth: int = 0):
        """`name` looked up as Python would on an instance of `ref`: the class, then its bases, which
        may be classes of other project modules."""
        if name in ref.info.methods:
            return ref.info.methods[name]
        if depth >= 8:
            return None
        for base in ref.info.node.bases:
            base_path = names.path_of(base)
            based = self.class_named(ref.module, base_path) if base_path else None
            if based is not None and based.info is not ref.info:
                found = self.method(based, name, depth + 1)
                if found is not None:
                    return found
        return None

    def base_method(self, ref: ClassRef, name: str):
        """What `super().name` calls from a method of `ref`: the first base that has it."""
        for base in ref.info.node.bases:
            base_path = names.path_of(base)
            based = self.class_named(ref.module, base_path) if base_path else None
            if based is not None:
                found = self.method(based, name)
                if found is not None:
                    return found
        return None

    def class_of(self, function: ast.AST) -> ClassRef | None:
        module = self.module_of.get(function)
        if module is None:
            return None
        info = self.index(module).class_of(function)
        return ClassRef(info, module) if info is not None else None
