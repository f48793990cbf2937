"""A project: the files a training path runs through, found the way Python finds them.

Each checked file's project root is the nearest directory above it holding `pyproject.toml`,
`setup.py`, `setup.cfg` or `.git` (else the directory it is in). An import names a project file when
a module or package of that name is found, as Python would find it for a script run from the
importing file's directory: that directory, the directories above it up to the root, the root's
`src/`; a relative import (`from .misc import X`) from the importer's package. What resolves to no
project file (the standard library, installed packages, a `sys.path` entry added at run time) is
outside the project: gradlint assumes it does the right thing. A local module that shadows an
installed one (`utils`) is the local one, as it is for Python.

Modules are read, parsed and indexed once each, on first use, and known by their real path: a
package reached through a symbolic link is the same module as its target. A file that cannot be
read or parsed is a module that does not resolve: its callers are analysed with that callee unknown.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradlint.checker import SourceError

ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
# `import a.b as c`, `from ..a import (b, c)`: what a file imports, read from its text without a parse,
# for the pre-filter (a module can only reach a backward pass through what it imports).
IMPORT_LINE = re.compile(
    r"^[ \t]*(?:import[ \t]+(?P<modules>[\w., \t]+)|from[ \t]+(?P<dots>\.*)[ \t]*(?P<base>[\w.]*)[ \t]+import"
    r"[ \t]*(?P<names>\([^)]*\)|(?:[\w., \t]|\\\n)+))",
    re.MULTILINE,
)


SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules", "site-packages"})
# Words of a module that clears or steps gradients a caller computes.
HANDED_WORDS = frozenset({"zero_grad", ".step(", ".grad"})


def project_root(path: str) -> str:
    """The nearest directory at or above `path`'s own that marks a project; else `path`'s directory."""
    start = os.path.dirname(os.path.abspath(path))
    directory = start
    while True:
        if any(os.path.exists(os.path.join(directory, marker)) for marker in ROOT_MARKERS):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return start
        directory = parent


@dataclass(frozen=True)
class ImportedName:
    """What a local name is bound to by an import: a module (`attribute` None) or a name in one."""

    module: str  # the dotted module as written, without the leading dots
    level: int  # the dots of a relative import
    attribute: str | None = None


def imports_of(tree: ast.Module) -> dict[str, ImportedName]:
    """Every name an import binds, at module level or inside a function (a training function often
    imports its helpers where it uses them). The last binding wins, as it would at run time."""
    bound: dict[str, ImportedName] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = ImportedName(alias.name, 0)
                else:
                    # `import util.misc` binds `util`; the dotted path reaches the submodule
                    bound[alias.name.split(".")[0]] = ImportedName(alias.name.split(".")[0], 0)
                    bound[alias.name] = ImportedName(alias.name, 0)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    bound[alias.asname or alias.name] = ImportedName(node.module or "", node.level, alias.name)
    return bound


def star_imports_of(tree: ast.Module) -> list[ImportedName]:
    return [
        ImportedName(node.module or "", node.level)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)
    ]


def imported_modules(text: str) -> Iterator[tuple[str, int]]:
    """(dotted module, level) for each module `text` may import, read from its import lines; a name
    imported from a package may be a submodule, so `from pkg import a` yields `pkg` and `pkg.a`."""
    for match in IMPORT_LINE.finditer(text):
        if match.group("modules") is not None:
            for part in match.group("modules").split(","):
                name = part.split(" as ")[0].strip()
                if name:
                    yield name, 0
            continue
        level = len(match.group("dots"))
        base = match.group("base")
        yield base, level
        for part in match.group("names").strip("()").replace("\\", " ").split(","):
            name = part.split(" as ")[0].strip()
            if name and name != "*" and name.isidentifier():
                yield f"{base}.{name}" if base else name, level


@dataclass
class Resolver:
    """Finds the file of a module imported by a file of one project, with what is on disk cached."""

    root: str
    _files: dict[str, bool] = field(default_factory=dict)

    def is_file(self, path: str) -> bool:
        if path not in self._files:
            self._files[path] = os.path.isfile(path)
        return self._files[path]

    def search_directories(self, importer: str) -> list[str]:
        """Where an absolute import is looked for: the importer's directory and those above it up to
        the root (the script run may be any of them), then the root's `src/` layout."""
        directories = []
        directory = os.path.dirname(importer)
        while True:
            directories.append(directory)
            if directory == self.root or not directory.startswith(self.root + os.sep):
                break
            directory = os.path.dirname(directory)
        directories.append(os.path.join(self.root, "src"))
        return directories

    def module_file(self, dotted: str, importer: str, level: int = 0) -> str | None:
        """The file of module `dotted` imported from `importer`, or None when it is no project file."""
        if level:
            base = os.path.dirname(importer)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            if not base.startswith(self.root):
                return None
            return self.in_directory(base, dotted) if dotted else self.package_file(base)
        if not dotted:
            return None
        for directory in self.search_directories(importer):
            found = self.in_directory(directory, dotted)
            if found is not None:
                return found
        return None

    def in_directory(self, directory: str, dotted: str) -> str | None:
        path = os.path.join(directory, *dotted.split("."))
        if self.is_file(path + ".py"):
            return path + ".py"
        return self.package_file(path)

    def package_file(self, directory: str) -> str | None:
        init = os.path.join(directory, "__init__.py")
        return init if self.is_file(init) else None


@dataclass(eq=False)
class Module:
    """One project file, parsed: its text, tree and what its imports bind."""

    file: str  # real path: one module however it is reached
    path: str  # as the user knows it (the path checked, or relative to where gradlint runs)
    lines: list[str]
    tree: ast.Module
    imports: dict[str, ImportedName]
    star_imports: list[ImportedName]
    resolver: Resolver | None  # None: a module known only by its tree, whose imports are not followed

    @property
    def is_package(self) -> bool:
        return os.path.basename(self.file) == "__init__.py"


@dataclass(frozen=True)
class Definition:
    """What a dotted name refers to: a function, a class or a module, and the module it is in."""

    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | None  # None: the module itself


class Project:
    """The modules of every project touched by a run, each read and parsed at most once."""

    def __init__(self, display_paths: dict[str, str] | None = None) -> None:
        self.resolvers: dict[str, Resolver] = {}
        self.modules: dict[str, Module | None] = {}
        self.texts: dict[str, str | None] = {}
        self.errors: dict[str, SourceError] = {}  # why a file is no module: it cannot be read or parsed
        self.imports: dict[str, set[str]] = {}
        self.graphs: dict[str, dict[str, set[str]]] = {}
        self.display_paths = display_paths or {}  # real path -> the path as the user named it

    def resolver_for(self, file: str) -> Resolver:
        root = project_root(file)
        if root not in self.resolvers:
            self.resolvers[root] = Resolver(root)
        return self.resolvers[root]

    def text_of(self, file: str) -> str | None:
        if file not in self.texts:
            from gradlint.checker import SourceError  # here: checker imports this module's users
            from gradlint.files import read_source

            try:
                self.texts[file] = read_source(file)
            except SourceError as error:
                self.texts[file] = None
                self.errors[file] = error
        return self.texts[file]

    def error_of(self, path: str) -> SourceError | None:
        return self.errors.get(os.path.realpath(path))

    def module(self, file: str) -> Module | None:
        """The module in `file`, parsed; None when it cannot be read or parsed."""
        file = os.path.realpath(file)
        if file not in self.modules:
            self.modules[file] = self.load(file)
        return self.modules[file]

    def load(self, file: str) -> Module | None:
        from gradlint.checker import SourceError, parse_source, source_lines

        text = self.text_of(file)
        if text is None:
            return None
        try:
            tree = parse_source(text, file)
        except SourceError as error:
            self.errors[file] = error
            return None
        return Module(
            file,
            self.display_paths.get(file) or display_path(file),
            source_lines(text),
            tree,
            imports_of(tree),
            star_imports_of(tree),
            self.resolver_for(file),
        )

    def add(self, module: Module) -> None:
        """A module whose text the caller already has (an editor's buffer, flake8's tree)."""
        self.modules[module.file] = module

    # --- names to definitions ---------------------------------------------------------------------
    def imported(self, module: Module, name: ImportedName) -> Definition | None:
        if module.resolver is None:
            return None
        file = module.resolver.module_file(name.module, module.file, name.level)
        if name.attribute is None:
            target = self.module(file) if file else None
            return Definition(target, None) if target else None
        if file is not None:
            target = self.module(file)
            if target is not None:
                found = self.lookup(target, name.attribute)
                if found is not None:
                    return found
        # `from pkg import submodule`
        dotted = f"{name.module}.{name.attribute}" if name.module else name.attribute
        file = module.resolver.module_file(dotted, module.file, name.level)
        target = self.module(file) if file else None
        return Definition(target, None) if target else None

    def lookup(self, module: Module, dotted: str, seen: frozenset[tuple[str, str]] = frozenset()) -> Definition | None:
        """What `dotted` names in `module`: its own function or class, or what an import binds
        (followed through re-exports in `__init__.py`); None for anything outside the project."""
        if (module.file, dotted) in seen or len(seen) > 32:
            return None  # an import cycle, or a chain of re-exports longer than any real one
        seen = seen | {(module.file, dotted)}
        head, _, rest = dotted.partition(".")
        own = own_definition(module, head)
        if own is not None:
            return own if not rest else None  # `Class.method` called unbound: not followed
        if dotted in module.imports and rest:  # `import util.misc` then `util.misc`
            found = self.imported(module, module.imports[dotted])
            return found
        found = None
        if head in module.imports:
            found = self.imported(module, module.imports[head])
        elif module.is_package and module.resolver is not None:
            file = module.resolver.in_directory(os.path.dirname(module.file), head)
            target = self.module(file) if file else None
            found = Definition(target, None) if target else None
        if found is None:
            for star in module.star_imports:
                origin = self.imported(module, star)
                if origin is not None and origin.node is None:
                    found = self.lookup(origin.module, head, seen)
                    if found is not None:
                        break
        if found is None or not rest:
            return found
        if found.node is None:
            return self.lookup(found.module, rest, seen)
        return None

    # --- which files reach which --------------------------------------------------------------------
    def imported_files(self, file: str) -> set[str]:
        """The project files `file`'s import lines may name, read from its text alone."""
        if file in self.imports:
            return self.imports[file]
        text = self.text_of(file)
        found = set()
        if text is not None:
            resolver = self.resolver_for(file)
            for dotted, level in imported_modules(text):
                target = resolver.module_file(dotted, file, level)
                if target is not None:
                    found.add(os.path.realpath(target))
            found.discard(os.path.realpath(file))
        self.imports[file] = found
        return found

    def reaches(self, file: str, has_words, seen: set[str] | None = None) -> bool:
        """Whether `file`, or a project module it imports (directly or not), has the rules' words."""
        seen = set() if seen is None else seen
        file = os.path.realpath(file)
        if file in seen:
            return False
        seen.add(file)
        text = self.text_of(file)
        if text is None:
            return False
        if has_words(text):
            return True
        return any(self.reaches(imported, has_words, seen) for imported in self.imported_files(file))

    def on_training_path(self, file: str, words: frozenset[str]) -> bool:
        """Whether `file` can take part in a training path: it, or a project module it imports, has
        one of the rules' words; or it clears or steps what a caller hands it (`loss_scaler(loss,
        optimizer)`), and a module that imports it reaches those words."""
        file = os.path.realpath(file)

        def has_words(text: str) -> bool:
            return any(word in text for word in words)

        if self.reaches(file, has_words):
            return True
        if not any(word in (self.text_of(file) or "") for word in HANDED_WORDS):
            return False
        return any(self.reaches(importer, has_words) for importer in self.importers({file}))

    def project_files(self, root: str) -> list[str]:
        """The `.py` files of the project, outside hidden directories, caches and virtualenvs."""
        found = []
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [
                d
                for d in subdirectories
                if not d.startswith(".")
                and d not in SKIPPED_DIRECTORIES
                and not os.path.isfile(os.path.join(directory, d, "pyvenv.cfg"))
            ]
            found += [os.path.realpath(os.path.join(directory, f)) for f in files if f.endswith(".py")]
        return sorted(found)

    def importers(self, files: Iterable[str]) -> set[str]:
        """Every project file that imports one of `files`, directly or through others."""
        wanted = {os.path.realpath(f) for f in files}
        imported_by: dict[str, set[str]] = {}
        for root in {self.resolver_for(file).root for file in wanted}:
            for candidate, targets in self.import_graph(root).items():
                for target in targets:
                    imported_by.setdefault(target, set()).add(candidate)
        found: set[str] = set()
        frontier = set(wanted)
        while frontier:
            newly = {c for f in frontier for c in imported_by.get(f, ()) if c not in found and c not in wanted}
            found |= newly
            frontier = newly
        return found

    def import_graph(self, root: str) -> dict[str, set[str]]:
        """What each project file under `root` imports, read from the text of every file once."""
        if root not in self.graphs:
            self.graphs[root] = {file: self.imported_files(file) for file in self.project_files(root)}
        return self.graphs[root]


def own_definition(module: Module, name: str) -> Definition | None:
    """The module's own top-level def or class of that name; the last one, as at run time."""
    found = None
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found = Definition(module, node)
    return found


def display_path(file: str) -> str:
    relative = os.path.relpath(file)
    return file if relative.startswith(os.pardir) else relative
