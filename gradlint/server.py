"""`gradlint server`: the Language Server editors start over stdio (`pip install 'gradlint[server]'`).

A thin shell over the checker, as the CLI is: each open `.py` buffer, and each notebook (LSP 3.17
notebook sync), is checked with the settings of its own project, and its findings become
diagnostics with their related lines, a link to the rule's page and the rule's severity; code
actions offer the rule's fix, `# noqa`, and every safe fix at once (`source.fixAll.gradlint`);
hovering a diagnostic shows the rule's `explain` page.

The analysis runs in worker threads, never on the event loop that reads the editor's messages: a
slow file does not hold up typing, and an edit that comes while a file is being analysed makes that
analysis's result stale (it is dropped, the newer text is analysed). Edits are debounced.

pygls is imported here only: the linter itself never needs it.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import unquote

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import PositionCodec, TextDocument

from gradlint import __version__
from gradlint.checker import FileResult, SourceError, source_lines
from gradlint.config import ConfigError
from gradlint.core import Finding, Location
from gradlint.editor import (
    Cell,
    LineEdit,
    ProjectSettings,
    check_buffer,
    line_edits,
    lines_with_ends,
    noqa_insertion,
    notebook_cell_texts,
    notebook_json,
)
from gradlint.files import read_source
from gradlint.report import ERROR_CODE
from gradlint.ruledocs import find_rule, rule_markdown, rule_url, severity_of

T = TypeVar("T")

SOURCE = "gradlint"
# Long enough that a burst of keystrokes is analysed once, short enough not to be noticed.
DEBOUNCE_SECONDS = 0.15
# Two: one slow file being analysed does not hold up the buffer being typed in.
ANALYSIS_THREADS = 2
FIX_ALL = f"{types.CodeActionKind.SourceFixAll.value}.{SOURCE}"  # source.fixAll.gradlint
PYTHON_SUFFIXES = (".py", ".pyw", ".pyi")
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}
# Markdown cells are synced too: a finding names its cell by its position among all cells.
NOTEBOOK_SYNC = types.NotebookDocumentSyncOptions(
    notebook_selector=[
        types.NotebookDocumentFilterWithNotebook(
            notebook="*",
            cells=[types.NotebookCellLanguage("python"), types.NotebookCellLanguage("markdown")],
        )
    ],
    save=True,
)


@dataclass(frozen=True)
class Snapshot:
    """What one analysis reads: a buffer's text, or a notebook's cells, at one version."""

    uri: str  # the text document, or the notebook
    version: int | None
    path: str | None  # on disk, for its project's settings; None for a buffer never saved
    name: str  # as findings and messages name the file
    text: str  # the Python source, or the notebook as nbformat JSON
    notebook: bool = False
    cell_uris: tuple[str, ...] = ()  # a notebook's cells in order, every kind
    cell_texts: tuple[str, ...] = ()

    def target(self, cell: int | None) -> tuple[str, str]:
        """The document a location is in, and its text: the buffer, or the notebook's `cell`."""
        if not self.notebook:
            return self.uri, self.text
        index = min(max((cell or 1) - 1, 0), len(self.cell_uris) - 1)
        return self.cell_uris[index], self.cell_texts[index]

    def cell_number(self, uri: str) -> int | None:
        return self.cell_uris.index(uri) + 1 if uri in self.cell_uris else None


@dataclass(frozen=True)
class Analysis:
    snapshot: Snapshot
    result: FileResult


class GradlintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            SOURCE,
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=NOTEBOOK_SYNC,
        )
        self.settings = ProjectSettings()
        self.analyses = ThreadPoolExecutor(ANALYSIS_THREADS, thread_name_prefix="gradlint-analysis")
        self.scheduled: dict[str, asyncio.Task[None]] = {}  # document or notebook -> its next analysis
        self.latest: dict[str, Analysis] = {}  # document or notebook -> what its diagnostics show

    async def in_worker(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.analyses, work, *args)


# --- what is open ---------------------------------------------------------------------------------


def open_document(ls: GradlintServer, uri: str) -> TextDocument | None:
    # pygls's get_text_document would invent a document read from disk for a uri not open.
    return ls.workspace.text_documents.get(unquote(uri))


def file_path(uri: str) -> str | None:
    return to_fs_path(uri) if uri.startswith("file:") else None


def is_python(document: TextDocument) -> bool:
    return document.language_id == "python" or document.uri.endswith(PYTHON_SUFFIXES)


def snapshot_of(ls: GradlintServer, uri: str) -> Snapshot | None:
    """The notebook or the Python buffer open at `uri` as it is now; None for anything else."""
    notebook = ls.workspace.get_notebook_document(notebook_uri=uri)
    if notebook is not None:
        return notebook_snapshot(ls, notebook)
    document = open_document(ls, uri)
    if document is None or not is_python(document):
        return None
    path = file_path(uri)
    return Snapshot(uri, document.version, path, path or uri, document.source)


def notebook_snapshot(ls: GradlintServer, notebook: types.NotebookDocument) -> Snapshot:
    cells = []
    for cell in notebook.cells:
        document = open_document(ls, cell.document)
        text = document.source if document is not None else ""
        if cell.kind == types.NotebookCellKind.Markup:
            kind = "markdown"
        elif document is None or document.language_id in (None, "python"):
            kind = "code"
        else:
            kind = "raw"  # a cell in another language: not Python to read, but it keeps its number
        cells.append(Cell(kind, text))
    path = file_path(notebook.uri)
    return Snapshot(
        notebook.uri,
        notebook.version,
        path,
        path or notebook.uri,
        notebook_json(cells, notebook.metadata),
        notebook=True,
        cell_uris=tuple(cell.document for cell in notebook.cells),
        cell_texts=tuple(cell.text for cell in cells),
    )


def notebook_of_cell(ls: GradlintServer, uri: str) -> str | None:
    notebook = ls.workspace.get_notebook_document(cell_uri=uri)
    return notebook.uri if notebook is not None else None


def owner_of(ls: GradlintServer, uri: str) -> str:
    """What is analysed for a request on `uri`: its notebook if it is a cell, else itself."""
    return notebook_of_cell(ls, uri) or uri


# --- analysing and publishing ----------------------------------------------------------------------


def analyse(settings: ProjectSettings, snapshot: Snapshot) -> Analysis:
    """In a worker thread; never raises (a bug in gradlint is reported as the file's GL000)."""
    try:
        result = check_buffer(snapshot.text, snapshot.path, snapshot.name, snapshot.notebook, settings)
    except Exception as error:
        result = FileResult(
            snapshot.name, error=SourceError(f"internal error: {type(error).__name__}: {error}")
        )
    return Analysis(snapshot, result)


def schedule(ls: GradlintServer, uri: str, delay: float = 0.0) -> None:
    """Analyse `uri` after `delay`; an analysis still pending or running for it is dropped."""
    previous = ls.scheduled.pop(uri, None)
    if previous is not None:
        previous.cancel()
    ls.scheduled[uri] = asyncio.get_running_loop().create_task(analyse_and_publish(ls, uri, delay))


async def analyse_and_publish(ls: GradlintServer, uri: str, delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
    snapshot = snapshot_of(ls, uri)
    if snapshot is None:
        return
    try:
        analysis = await ls.in_worker(analyse, ls.settings, snapshot)
    except RuntimeError:  # the workers are gone: the server is shutting down
        return
    if ls.scheduled.get(uri) is asyncio.current_task():
        del ls.scheduled[uri]
    if snapshot_of(ls, uri) == snapshot:  # else a newer edit has its own analysis coming
        publish(ls, analysis)


def publish(ls: GradlintServer, analysis: Analysis) -> None:
    snapshot = analysis.snapshot
    by_document = diagnostics_of(ls, analysis)
    previous = ls.latest.get(snapshot.uri)
    gone = set(previous.snapshot.cell_uris) - set(snapshot.cell_uris) if previous else set()
    for uri in sorted(gone):  # cells deleted since: their diagnostics go with them
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
    ls.latest[snapshot.uri] = analysis
    for uri, diagnostics in by_document.items():
        version = snapshot.version if uri == snapshot.uri else None
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )


def clear(ls: GradlintServer, uri: str) -> None:
    task = ls.scheduled.pop(uri, None)
    if task is not None:
        task.cancel()
    analysis = ls.latest.pop(uri, None)
    documents = analysis.snapshot.cell_uris if analysis and analysis.snapshot.notebook else (uri,)
    for document in documents:
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=document, diagnostics=[]))


def reanalyse_everything(ls: GradlintServer) -> None:
    """After a pyproject.toml changed: every open buffer and notebook, with its settings read again.

    By the uris the client gave (the workspace keeps them unquoted): diagnostics must go back to those."""
    for uri in sorted({*ls.latest, *ls.scheduled}):
        schedule(ls, uri)


# --- findings as diagnostics ----------------------------------------------------------------------


def diagnostics_of(ls: GradlintServer, analysis: Analysis) -> dict[str, list[types.Diagnostic]]:
    """Each document's diagnostics, every cell of a notebook included (an empty list clears it)."""
    snapshot, result = analysis.snapshot, analysis.result
    documents = snapshot.cell_uris if snapshot.notebook else (snapshot.uri,)
    by_document: dict[str, list[types.Diagnostic]] = {uri: [] for uri in documents}
    if not documents:
        return by_document  # a notebook without cells: nowhere to put anything
    codec = ls.workspace.position_codec
    if result.error is not None:
        # Nothing else: findings of an older text would point at lines that are no longer them.
        uri, text = snapshot.target(result.error.cell)
        by_document[uri] = [error_diagnostic(result.error, source_lines(text), codec)]
        return by_document
    for finding in result.findings:
        uri, text = snapshot.target(finding.location.cell)
        by_document[uri].append(finding_diagnostic(finding, snapshot, source_lines(text), codec))
    return by_document


def finding_diagnostic(
    finding: Finding, snapshot: Snapshot, lines: list[str], codec: PositionCodec
) -> types.Diagnostic:
    related = []
    for note in finding.related:
        if note.path is None:
            uri, text = snapshot.target(note.location.cell)
            note_lines: list[str] | None = source_lines(text)
        else:  # in another file: one the editor may not have open
            uri, note_lines = Path(os.path.abspath(note.path)).as_uri(), file_lines(note.path)
        where = types.Location(uri=uri, range=to_range(note_lines, note.location, codec))
        related.append(types.DiagnosticRelatedInformation(location=where, message=note.message))
    return types.Diagnostic(
        range=to_range(lines, finding.location, codec),
        message=finding.message,
        severity=SEVERITY[severity_of(finding.code)],
        code=finding.code,
        code_description=types.CodeDescription(href=rule_url(finding.code)),
        source=SOURCE,
        related_information=related or None,
    )


def error_diagnostic(error: SourceError, lines: list[str], codec: PositionCodec) -> types.Diagnostic:
    at = Location(error.line, error.col, error.line, error.col + 1)
    return types.Diagnostic(
        range=to_range(lines, at, codec),
        message=f"not checked: {error.message}",
        severity=types.DiagnosticSeverity.Error,
        code=ERROR_CODE,
        source=SOURCE,
    )


def file_lines(path: str) -> list[str] | None:
    try:
        return source_lines(read_source(path))
    except SourceError:
        return None  # its columns are then given as they are: right for ASCII


def to_range(lines: list[str] | None, location: Location, codec: PositionCodec) -> types.Range:
    return types.Range(
        start=to_position(lines, location.line, location.col, codec),
        end=to_position(lines, location.end_line, location.end_col, codec),
    )


def to_position(lines: list[str] | None, line: int, col: int, codec: PositionCodec) -> types.Position:
    """gradlint's 1-based line and column (in characters) as the client counts: 0-based, in the
    negotiated code units (UTF-16 unless the client chose otherwise)."""
    index = max(line - 1, 0)
    if lines is None or index >= len(lines):
        return types.Position(line=index, character=max(col - 1, 0))
    text = lines[index]
    return types.Position(line=index, character=codec.client_num_units(text[: max(col - 1, 0)]))


def from_position(lines: list[str], position: types.Position, codec: PositionCodec) -> tuple[int, int]:
    """The client's position as gradlint's 1-based line and column."""
    if not lines:
        return 1, 1
    server = codec.position_from_client_units(lines, types.Position(position.line, position.character))
    return server.line + 1, server.character + 1


def fresh_analysis(ls: GradlintServer, uri: str) -> Analysis | None:
    """The published analysis of `uri` (or of its notebook) if it is of the text open now."""
    owner = owner_of(ls, uri)
    analysis = ls.latest.get(owner)
    if analysis is None or snapshot_of(ls, owner) != analysis.snapshot:
        return None
    return analysis


def findings_in(analysis: Analysis, uri: str, start: tuple[int, int], end: tuple[int, int]) -> list[Finding]:
    """The findings in document `uri` whose span meets the span `start`..`end` (line, col)."""
    cell = analysis.snapshot.cell_number(uri) if analysis.snapshot.notebook else None
    return [
        finding
        for finding in analysis.result.findings
        if finding.location.cell == cell
        and (finding.location.line, finding.location.col) <= end
        and start <= (finding.location.end_line, finding.location.end_col)
    ]


# --- hover -------------------------------------------------------------------------------------------


def hover(ls: GradlintServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    analysis = fresh_analysis(ls, uri)
    if analysis is None:
        return None
    _, text = analysis.snapshot.target(analysis.snapshot.cell_number(uri))
    lines = source_lines(text)
    at = from_position(lines, params.position, ls.workspace.position_codec)
    findings = findings_in(analysis, uri, at, at)
    if not findings:
        return None
    pages = "\n\n---\n\n".join(rule_markdown(find_rule(code)) for code in sorted({f.code for f in findings}))
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=pages),
        range=to_range(lines, findings[0].location, ls.workspace.position_codec),
    )


# --- code actions ------------------------------------------------------------------------------------


def wanted(only: list[str] | None, kind: str) -> bool:
    """A client asking for `only` some kinds wants `kind` if it is one of them or below one."""
    return only is None or any(kind == asked or kind.startswith(asked + ".") for asked in only)


async def code_actions(ls: GradlintServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    uri = params.text_document.uri
    owner = owner_of(ls, uri)
    snapshot = snapshot_of(ls, owner)
    if snapshot is None:
        return None
    analysis = fresh_analysis(ls, uri)
    if analysis is None:  # not published yet for this text (an edit since): analyse it now
        analysis = await ls.in_worker(analyse, ls.settings, snapshot)
    if analysis.result.error is not None:
        return None
    _, text = snapshot.target(snapshot.cell_number(uri))
    lines = source_lines(text)
    codec = ls.workspace.position_codec
    start = from_position(lines, params.range.start, codec)
    end = from_position(lines, params.range.end, codec)
    only = [str(kind) for kind in params.context.only] if params.context.only else None
    actions: list[types.CodeAction] = []
    for finding in findings_in(analysis, uri, start, end):
        diagnostic = finding_diagnostic(finding, snapshot, lines, codec)
        if wanted(only, types.CodeActionKind.QuickFix.value):
            fix = await ls.in_worker(fix_of_finding, ls.settings, snapshot, finding)
            if fix is not None:
                actions.append(fix_action(ls, finding, diagnostic, *fix))
            noqa = noqa_action(ls, uri, lines, finding, diagnostic)
            if noqa is not None:
                actions.append(noqa)
    if wanted(only, FIX_ALL) and has_fixable(analysis):
        edits = await ls.in_worker(fix_all_safe, ls.settings, snapshot)
        if edits:
            actions.append(
                types.CodeAction(
                    title="gradlint: fix all safe fixes",
                    kind=FIX_ALL,
                    edit=workspace_edit(ls, edits),
                )
            )
    return actions


def has_fixable(analysis: Analysis) -> bool:
    return any(find_rule(finding.code).fixable for finding in analysis.result.findings)


def fix_of_finding(
    settings: ProjectSettings, snapshot: Snapshot, finding: Finding
) -> tuple[dict[str, list[LineEdit]], bool] | None:
    """The edits that fix `finding` and whether the fix is safe; in a worker (libcst is slow)."""
    from gradlint.fix.engine import fix_finding  # libcst is loaded only to fix
    from gradlint.fix.notebooks import fix_notebook_finding

    try:
        codes = settings.codes_for(snapshot.path)
        if snapshot.notebook:
            fixed = fix_notebook_finding(snapshot.text, finding, snapshot.name, codes)
        else:
            fixed = fix_finding(snapshot.text, finding, snapshot.name, codes)
    except (ConfigError, SourceError):
        return None
    return None if fixed is None else (document_edits(snapshot, fixed.text), fixed.safe)


def fix_all_safe(settings: ProjectSettings, snapshot: Snapshot) -> dict[str, list[LineEdit]]:
    """Each document's edits that apply every safe fix; in a worker."""
    from gradlint.fix.engine import fix_source  # libcst is loaded only to fix
    from gradlint.fix.notebooks import fix_notebook

    try:
        codes = settings.codes_for(snapshot.path)
        if snapshot.notebook:
            fixed = fix_notebook(snapshot.text, snapshot.name, codes)
        else:
            fixed = fix_source(snapshot.text, snapshot.name, codes)
    except (ConfigError, SourceError, json.JSONDecodeError):
        return {}
    return document_edits(snapshot, fixed.text) if fixed.changed else {}


def document_edits(snapshot: Snapshot, fixed_text: str) -> dict[str, list[LineEdit]]:
    """What turns each document into its part of `fixed_text`: the buffer, or the notebook's cells."""
    if not snapshot.notebook:
        return {snapshot.uri: line_edits(snapshot.text, fixed_text)}
    cells = zip(snapshot.cell_uris, snapshot.cell_texts, notebook_cell_texts(fixed_text))
    return {uri: line_edits(old, new) for uri, old, new in cells if old != new}


def fix_action(
    ls: GradlintServer,
    finding: Finding,
    diagnostic: types.Diagnostic,
    edits: dict[str, list[LineEdit]],
    safe: bool,
) -> types.CodeAction:
    rule = find_rule(finding.code)
    title = f"gradlint: fix {finding.code} ({rule.name})" + ("" if safe else " [unsafe fix]")
    return types.CodeAction(
        title=title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[diagnostic],
        is_preferred=safe,  # what an editor's "fix this" applies without asking: safe fixes only
        edit=workspace_edit(ls, edits),
    )


def noqa_action(
    ls: GradlintServer, uri: str, lines: list[str], finding: Finding, diagnostic: types.Diagnostic
) -> types.CodeAction | None:
    index = finding.location.line - 1
    if not 0 <= index < len(lines):
        return None
    insertion = noqa_insertion(lines[index], finding.code)
    if insertion is None:
        return None
    codec = ls.workspace.position_codec
    edit = types.TextEdit(
        range=types.Range(
            start=to_position(lines, index + 1, insertion.start + 1, codec),
            end=to_position(lines, index + 1, insertion.end + 1, codec),
        ),
        new_text=insertion.text,
    )
    return types.CodeAction(
        title=f"gradlint: add `# noqa: {finding.code}`",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[diagnostic],
        edit=types.WorkspaceEdit(changes={uri: [edit]}),
    )


def workspace_edit(ls: GradlintServer, edits: dict[str, list[LineEdit]]) -> types.WorkspaceEdit:
    changes = {}
    for uri, line_changes in edits.items():
        document = open_document(ls, uri)
        lines = lines_with_ends(document.source if document is not None else "")
        changes[uri] = [text_edit(lines, edit, ls.workspace.position_codec) for edit in line_changes]
    return types.WorkspaceEdit(changes=changes)


def text_edit(lines: list[str], edit: LineEdit, codec: PositionCodec) -> types.TextEdit:
    return types.TextEdit(
        range=types.Range(start=line_start(lines, edit.start, codec), end=line_start(lines, edit.end, codec)),
        new_text=edit.text,
    )


def line_start(lines: list[str], index: int, codec: PositionCodec) -> types.Position:
    """Where line `index` starts; past the last line, the end of the text (which may have no line end)."""
    if index < len(lines) or not lines or lines[-1].endswith(("\n", "\r")):
        return types.Position(line=index, character=0)
    return types.Position(line=len(lines) - 1, character=codec.client_num_units(lines[-1]))


# --- the server ---------------------------------------------------------------------------------------


def build_server() -> GradlintServer:
    server = GradlintServer()

    @server.feature(types.INITIALIZED)
    def initialized(ls: GradlintServer, params: types.InitializedParams) -> None:
        watch_configs(ls)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: GradlintServer, params: types.DidOpenTextDocumentParams) -> None:
        schedule(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: GradlintServer, params: types.DidChangeTextDocumentParams) -> None:
        schedule(ls, params.text_document.uri, DEBOUNCE_SECONDS)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: GradlintServer, params: types.DidSaveTextDocumentParams) -> None:
        if os.path.basename(file_path(params.text_document.uri) or "") == "pyproject.toml":
            reanalyse_everything(ls)
        else:
            schedule(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: GradlintServer, params: types.DidCloseTextDocumentParams) -> None:
        clear(ls, params.text_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def notebook_did_open(ls: GradlintServer, params: types.DidOpenNotebookDocumentParams) -> None:
        schedule(ls, params.notebook_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def notebook_did_change(ls: GradlintServer, params: types.DidChangeNotebookDocumentParams) -> None:
        schedule(ls, params.notebook_document.uri, DEBOUNCE_SECONDS)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    def notebook_did_save(ls: GradlintServer, params: types.DidSaveNotebookDocumentParams) -> None:
        schedule(ls, params.notebook_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def notebook_did_close(ls: GradlintServer, params: types.DidCloseNotebookDocumentParams) -> None:
        clear(ls, params.notebook_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched_files_changed(ls: GradlintServer, params: types.DidChangeWatchedFilesParams) -> None:
        reanalyse_everything(ls)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(ls: GradlintServer, params: types.HoverParams) -> types.Hover | None:
        return hover(ls, params)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL]),
    )
    async def on_code_action(
        ls: GradlintServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        return await code_actions(ls, params)

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: GradlintServer, params: None) -> None:
        for task in ls.scheduled.values():
            task.cancel()
        ls.analyses.shutdown(wait=False, cancel_futures=True)

    return server


def watch_configs(ls: GradlintServer) -> None:
    """Ask the client to say when a pyproject.toml changes, if it can watch files for us."""
    workspace = ls.client_capabilities.workspace
    watching = workspace.did_change_watched_files if workspace is not None else None
    if watching is None or not watching.dynamic_registration:
        return  # a saved pyproject.toml the editor has open still counts (did_save)
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern="**/pyproject.toml")]
    )
    registration = types.Registration(
        id="gradlint-config", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
    )
    ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


def serve() -> int:
    build_server().start_io()
    return 0
