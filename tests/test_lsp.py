"""`gradlint server` end to end: a real LSP client (pytest-lsp) starts it over stdio and drives it as
an editor would: open, edit, diagnostics, code actions applied, hover, a notebook, a broken file,
settings, shutdown.

Set GRADLINT_LSP_TRANSCRIPT=FILE to write every message of each session to FILE (JSON lines).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest_lsp
from helpers import gradlint
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, LanguageClientProtocol
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

from gradlint.checker import check_source
from gradlint.fix.engine import fix_source
from gradlint.fix.notebooks import fix_notebook
from gradlint.ruledocs import rule_markdown, rule_url
from gradlint.rules import RULES_BY_CODE

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fix_golden"
STEP_LINE, STEP_COL = 11, 9  # BUGGY_LOOP's `optimizer.step()`, the step the clear starves
WAIT_SECONDS = 60  # a generous bound on a busy machine; a diagnostic that never comes fails the test


class RecordingProtocol(LanguageClientProtocol):
    """Keeps every message, both ways, for the transcript."""

    def _send_data(self, data):
        self._server.transcript.append(("client", self._serialize_message(data)))
        super()._send_data(data)

    def handle_message(self, message):
        self._server.transcript.append(("server", self._serialize_message(message)))
        super().handle_message(message)


def recording_client() -> LanguageClient:
    client = LanguageClient(protocol_cls=RecordingProtocol, converter_factory=default_converter)
    client.transcript = []
    client.published = []  # every publishDiagnostics, in the order they came
    client.registrations = []  # what the server asked the client to register

    def published(client: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
        params.diagnostics = list(params.diagnostics)  # a tuple as it comes: lists compare plainly
        client.diagnostics[params.uri] = params.diagnostics
        client.published.append(params)

    def registered(client: LanguageClient, params: types.RegistrationParams) -> None:
        client.registrations.extend(params.registrations)

    features = {
        **DEFAULT_CLIENT_FEATURES,
        types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: published,
        types.CLIENT_REGISTER_CAPABILITY: registered,
    }
    register_lsp_features(client, features)
    return client


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
        ),
        text_document=types.TextDocumentClientCapabilities(
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities(
                related_information=True, version_support=True, code_description_support=True
            ),
            hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
            code_action=types.CodeActionClientCapabilities(
                code_action_literal_support=types.ClientCodeActionLiteralOptions(
                    code_action_kind=types.ClientCodeActionKindOptions(
                        value_set=[types.CodeActionKind.QuickFix, types.CodeActionKind.SourceFixAll]
                    )
                ),
                is_preferred_support=True,
            ),
        ),
        notebook_document=types.NotebookDocumentClientCapabilities(
            synchronization=types.NotebookDocumentSyncClientCapabilities()
        ),
    )


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "gradlint", "server"], client_factory=recording_client
    )
)
async def client(lsp_client: LanguageClient, tmp_path, request):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=capabilities(), root_uri=tmp_path.as_uri())
    )
    yield
    if lsp_client._server.returncode is None:  # a test may have shut it down itself
        await lsp_client.shutdown_session()
    write_transcript(lsp_client, request.node.name)


def write_transcript(client: LanguageClient, test: str) -> None:
    destination = os.environ.get("GRADLINT_LSP_TRANSCRIPT")
    if destination:
        with open(destination, "a", encoding="utf-8") as file:
            for sender, message in client.transcript:
                file.write(json.dumps({"test": test, "from": sender, "message": message}) + "\n")


# --- helpers -----------------------------------------------------------------------------------------


async def diagnostics_for(
    client: LanguageClient, uri: str, since: int = 0, version: int | None = None
) -> types.PublishDiagnosticsParams:
    """The first publishDiagnostics for `uri` (of `version`, if given) after the `since`-th one."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for params in client.published[since:]:
            if params.uri == uri and (version is None or params.version == version):
                return params
        await asyncio.sleep(0.01)
    raise AssertionError(f"no diagnostics for {uri} (version {version}) in {WAIT_SECONDS}s")


def open_file(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        )
    )
    return uri


def replace_all(client: LanguageClient, uri: str, text: str, version: int) -> None:
    """An incremental change that replaces the whole buffer (the server is told Incremental)."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(0, 0), end=types.Position(10_000, 0)), text=text
                )
            ],
        )
    )


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    """What an editor does with a WorkspaceEdit's text edits (ASCII text: UTF-16 units are characters)."""
    lines = text.splitlines(keepends=True)

    def offset(position: types.Position) -> int:
        return sum(len(line) for line in lines[: position.line]) + position.character

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start, end = offset(edit.range.start), offset(edit.range.end)
        text = text[:start] + edit.new_text + text[end:]
    return text


async def code_actions(
    client: LanguageClient,
    uri: str,
    diagnostic: types.Diagnostic | None = None,
    only: list[str] | None = None,
) -> list[types.CodeAction]:
    where = diagnostic.range if diagnostic else types.Range(types.Position(0, 0), types.Position(0, 0))
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=where,
            context=types.CodeActionContext(diagnostics=[diagnostic] if diagnostic else [], only=only),
        )
    )
    return list(result or [])


def the(items):
    (item,) = items
    return item


# --- diagnostics ---------------------------------------------------------------------------------------


async def test_open_publishes_the_finding_with_its_link_severity_and_related_line(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    published = await diagnostics_for(client, uri)
    assert published.version == 1
    diagnostic = the(published.diagnostics)
    assert (diagnostic.code, diagnostic.source) == ("GL101", "gradlint")
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert diagnostic.code_description.href == rule_url("GL101")
    start = diagnostic.range.start
    assert (start.line, start.character) == (BUG_LINE - 1, BUG_COL - 1)
    assert diagnostic.range.end == types.Position(BUG_LINE - 1, BUG_COL - 1 + len("optimizer.zero_grad()"))
    assert diagnostic.message.startswith("`optimizer.zero_grad()` runs once per iteration")
    related = the(diagnostic.related_information)
    assert related.location.uri == uri
    assert related.location.range.start == types.Position(STEP_LINE - 1, STEP_COL - 1)
    assert related.message


async def test_an_edit_that_fixes_the_bug_clears_the_diagnostic(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    assert (await diagnostics_for(client, uri)).diagnostics
    replace_all(client, uri, CLEAN_LOOP, version=2)
    assert (await diagnostics_for(client, uri, version=2)).diagnostics == []
    replace_all(client, uri, BUGGY_LOOP, version=3)
    assert the((await diagnostics_for(client, uri, version=3)).diagnostics).code == "GL101"


async def test_a_burst_of_edits_is_analysed_once_for_the_last_text(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", CLEAN_LOOP)
    await diagnostics_for(client, uri)
    since = len(client.published)
    for version in range(2, 7):  # typing: five changes well inside the debounce
        replace_all(client, uri, BUGGY_LOOP if version == 6 else CLEAN_LOOP + "#" * version, version)
    last = await diagnostics_for(client, uri, since=since)
    assert last.version == 6 and the(last.diagnostics).code == "GL101"
    await asyncio.sleep(0.5)  # nothing for the superseded versions comes after it either
    assert [params.version for params in client.published[since:] if params.uri == uri] == [6]


async def test_saving_analyses_again(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    await diagnostics_for(client, uri)
    since = len(client.published)
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri))
    )
    assert the((await diagnostics_for(client, uri, since=since)).diagnostics).code == "GL101"


async def test_closing_clears_the_diagnostics(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    await diagnostics_for(client, uri)
    since = len(client.published)
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    assert (await diagnostics_for(client, uri, since=since)).diagnostics == []


async def test_a_warning_rule_is_a_warning(client, tmp_path):
    source = (ROOT / "fixtures" / "bug_GL303_ddp_accumulation_without_no_sync.py").read_text()
    uri = open_file(client, tmp_path / "ddp.py", source)
    diagnostics = (await diagnostics_for(client, uri)).diagnostics
    assert {d.code: d.severity for d in diagnostics}.get("GL303") == types.DiagnosticSeverity.Warning


# --- a file that does not parse ---------------------------------------------------------------------


async def test_a_broken_file_gets_one_gl000_at_the_error_and_none_of_its_old_findings(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    assert the((await diagnostics_for(client, uri)).diagnostics).code == "GL101"
    replace_all(client, uri, BUGGY_LOOP.replace("for x, y in data:", "for x, y in data"), version=2)
    error = the((await diagnostics_for(client, uri, version=2)).diagnostics)
    assert (error.code, error.severity) == ("GL000", types.DiagnosticSeverity.Error)
    assert error.message.startswith("not checked: cannot parse: ")
    assert error.range.start.line == BUG_LINE  # the `for` line, after the clear's


async def test_a_file_broken_from_the_start_gets_one_gl000(client, tmp_path):
    uri = open_file(client, tmp_path / "broken.py", BROKEN_SOURCE)
    error = the((await diagnostics_for(client, uri)).diagnostics)
    assert error.code == "GL000"
    assert error.range.start == types.Position(0, 10)
    assert "Traceback" not in error.message


# --- code actions ------------------------------------------------------------------------------------


async def test_the_safe_fix_is_the_preferred_quick_fix_and_applied_gives_the_fixed_text(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    diagnostic = the((await diagnostics_for(client, uri)).diagnostics)
    actions = await code_actions(client, uri, diagnostic)
    fix = the([action for action in actions if action.is_preferred])
    assert fix.kind == types.CodeActionKind.QuickFix and "unsafe" not in fix.title
    assert fix.diagnostics[0].code == "GL101"
    fixed = apply_edits(BUGGY_LOOP, fix.edit.changes[uri])
    assert fixed == fix_source(BUGGY_LOOP).text != BUGGY_LOOP
    assert check_source(fixed) == []


async def test_an_unsafe_fix_is_labelled_and_not_preferred(client, tmp_path):
    source = "import torch\n" + (GOLDEN / "GL301_modulo.in.py").read_text()
    uri = open_file(client, tmp_path / "accumulate.py", source)
    diagnostic = the((await diagnostics_for(client, uri)).diagnostics)
    actions = await code_actions(client, uri, diagnostic)
    fix = the([action for action in actions if "fix GL301" in action.title])
    assert "[unsafe fix]" in fix.title and not fix.is_preferred
    assert check_source(apply_edits(source, fix.edit.changes[uri])) == []


async def test_noqa_action_silences_the_finding(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    diagnostic = the((await diagnostics_for(client, uri)).diagnostics)
    noqa = the([a for a in await code_actions(client, uri, diagnostic) if "noqa" in a.title])
    silenced = apply_edits(BUGGY_LOOP, noqa.edit.changes[uri])
    assert silenced.splitlines()[BUG_LINE - 1] == "    optimizer.zero_grad()  # noqa: GL101"
    assert check_source(silenced) == []
    replace_all(client, uri, silenced, version=2)
    assert (await diagnostics_for(client, uri, version=2)).diagnostics == []


async def test_fix_all_applies_every_safe_fix_of_the_document(client, tmp_path):
    unsafe = (GOLDEN / "GL301_modulo.in.py").read_text()
    source = BUGGY_LOOP + "\n" + unsafe
    uri = open_file(client, tmp_path / "train.py", source)
    assert len((await diagnostics_for(client, uri)).diagnostics) == 2
    actions = await code_actions(client, uri, only=[types.CodeActionKind.SourceFixAll])
    fix_all = the(actions)
    assert fix_all.kind == "source.fixAll.gradlint"
    fixed = apply_edits(source, fix_all.edit.changes[uri])
    assert fixed == fix_source(source).text
    assert [finding.code for finding in check_source(fixed)] == ["GL301"]  # the unsafe one is left


async def test_only_quick_fixes_asked_for_gives_no_fix_all(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    diagnostic = the((await diagnostics_for(client, uri)).diagnostics)
    actions = await code_actions(client, uri, diagnostic, only=[types.CodeActionKind.QuickFix])
    assert actions and all(action.kind == types.CodeActionKind.QuickFix for action in actions)


# --- hover -----------------------------------------------------------------------------------------


async def test_hover_on_a_diagnostic_shows_the_rules_page(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    diagnostic = the((await diagnostics_for(client, uri)).diagnostics)
    inside = types.Position(diagnostic.range.start.line, diagnostic.range.start.character + 3)
    shown = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), inside)
    )
    assert shown.contents.kind == types.MarkupKind.Markdown
    assert shown.contents.value == rule_markdown(RULES_BY_CODE["GL101"].RULE)
    assert shown.range == diagnostic.range
    elsewhere = types.Position(0, 0)
    assert (
        await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), elsewhere)
        )
        is None
    )


# --- off the event loop -------------------------------------------------------------------------------


async def test_a_slow_file_does_not_hold_up_requests_or_other_files(client, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from lsp_latency import training_file
    finally:
        sys.path.pop(0)
    slow = open_file(client, tmp_path / "slow.py", training_file(functions=250))
    started = time.monotonic()
    small = open_file(client, tmp_path / "small.py", BUGGY_LOOP)
    await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(small), types.Position(0, 0))
    )
    answered = time.monotonic() - started
    small_done = await diagnostics_for(client, small)
    slow_done = await diagnostics_for(client, slow)
    order = [params.uri for params in client.published]
    assert order.index(small) < order.index(slow), "the small file waited for the slow one"
    assert small_done.diagnostics and slow_done.version == 1
    assert answered < 1.0, f"a hover waited {answered:.2f}s behind an analysis"


# --- settings ----------------------------------------------------------------------------------------


async def test_each_project_of_the_workspace_keeps_its_own_settings(client, tmp_path):
    (tmp_path / "quiet").mkdir()
    (tmp_path / "quiet" / "pyproject.toml").write_text('[tool.gradlint]\nignore = ["GL101"]\n')
    (tmp_path / "loud").mkdir()
    (tmp_path / "loud" / "pyproject.toml").write_text('[tool.gradlint]\nselect = ["GL1"]\n')
    quiet = open_file(client, tmp_path / "quiet" / "train.py", BUGGY_LOOP)
    loud = open_file(client, tmp_path / "loud" / "train.py", BUGGY_LOOP)
    assert (await diagnostics_for(client, quiet)).diagnostics == []
    assert the((await diagnostics_for(client, loud)).diagnostics).code == "GL101"


async def test_the_server_asks_the_client_to_watch_pyproject_files(client):
    deadline = time.monotonic() + WAIT_SECONDS
    while not client.registrations and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    registration = the(client.registrations)
    assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
    watcher = the(registration.register_options["watchers"])
    assert watcher["globPattern"] == "**/pyproject.toml"


async def test_a_changed_pyproject_is_read_again(client, tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.gradlint]\nignore = ["GL101"]\n')
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    assert (await diagnostics_for(client, uri)).diagnostics == []
    config.write_text('[tool.gradlint]\nignore = ["GL2"]\n')
    since = len(client.published)
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=config.as_uri(), type=types.FileChangeType.Changed)]
        )
    )
    assert the((await diagnostics_for(client, uri, since=since)).diagnostics).code == "GL101"


async def test_a_broken_pyproject_is_one_gl000_not_a_crash(client, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\nselect = [\n")
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    error = the((await diagnostics_for(client, uri)).diagnostics)
    assert error.code == "GL000" and "invalid TOML" in error.message


async def test_per_file_ignores_and_exclude_apply_to_open_files(client, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradlint]\nextend-exclude = ["generated"]\n'
        '[tool.gradlint.per-file-ignores]\n"scripts/*" = ["GL101"]\n'
    )
    excluded = open_file(client, tmp_path / "generated" / "train.py", BUGGY_LOOP)
    ignored = open_file(client, tmp_path / "scripts" / "train.py", BUGGY_LOOP)
    checked = open_file(client, tmp_path / "src" / "train.py", BUGGY_LOOP)
    assert (await diagnostics_for(client, excluded)).diagnostics == []
    assert (await diagnostics_for(client, ignored)).diagnostics == []
    assert the((await diagnostics_for(client, checked)).diagnostics).code == "GL101"


# --- notebooks ---------------------------------------------------------------------------------------

SETUP = (
    "import torch\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
)
CLEAR_CELL = "optimizer.zero_grad()\n"
LOOP_CELL = "for x, y in data:\n    model(x).sum().backward()\n    optimizer.step()\n"


def open_notebook(client: LanguageClient, path: Path, cells: list[tuple[str, str]]) -> tuple[str, list[str]]:
    uri = path.as_uri()
    cell_uris = [f"vscode-notebook-cell:{path}#cell{number}" for number in range(len(cells))]
    kinds = {"code": types.NotebookCellKind.Code, "markdown": types.NotebookCellKind.Markup}
    client.notebook_document_did_open(
        types.DidOpenNotebookDocumentParams(
            notebook_document=types.NotebookDocument(
                uri=uri,
                notebook_type="jupyter-notebook",
                version=1,
                cells=[
                    types.NotebookCell(kind=kinds[kind], document=cell)
                    for (kind, _), cell in zip(cells, cell_uris)
                ],
            ),
            cell_text_documents=[
                types.TextDocumentItem(
                    uri=cell, language_id="python" if kind == "code" else "markdown", version=1, text=text
                )
                for (kind, text), cell in zip(cells, cell_uris)
            ],
        )
    )
    return uri, cell_uris


def change_cell(client: LanguageClient, notebook: str, cell: str, text: str, version: int) -> None:
    client.notebook_document_did_change(
        types.DidChangeNotebookDocumentParams(
            notebook_document=types.VersionedNotebookDocumentIdentifier(version=version, uri=notebook),
            change=types.NotebookDocumentChangeEvent(
                cells=types.NotebookDocumentCellChanges(
                    text_content=[
                        types.NotebookDocumentCellContentChanges(
                            document=types.VersionedTextDocumentIdentifier(uri=cell, version=version),
                            changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
                        )
                    ]
                )
            ),
        )
    )


def saved(cells: list[tuple[str, str]]) -> str:
    """The notebook as Jupyter would save it, for `gradlint fix` to read from disk."""
    return json.dumps(
        {
            "cells": [
                {"cell_type": kind, "metadata": {}, "source": text}
                | ({"outputs": [], "execution_count": None} if kind == "code" else {})
                for kind, text in cells
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


NOTEBOOK_CELLS = [
    ("markdown", "# Training\nClear once per epoch."),
    ("code", SETUP + "data = [(torch.randn(8, 4), torch.randn(8, 1))]\n"),
    ("markdown", "The clear:"),
    ("code", CLEAR_CELL),
    ("code", LOOP_CELL),
]


async def test_notebook_findings_land_on_their_cells_numbered_among_all_cells(client, tmp_path):
    _, cells = open_notebook(client, tmp_path / "train.ipynb", NOTEBOOK_CELLS)
    diagnostic = the((await diagnostics_for(client, cells[3])).diagnostics)  # the clear, the 4th cell
    assert (diagnostic.code, diagnostic.range.start) == ("GL101", types.Position(0, 0))
    assert "at line 3 of cell 5" in diagnostic.message  # the step, named as `gradlint check` names it
    related = the(diagnostic.related_information)
    assert related.location.uri == cells[4] and related.location.range.start == types.Position(2, 4)
    for other in (cells[0], cells[1], cells[2], cells[4]):  # every other cell is told it is clean
        assert (await diagnostics_for(client, other)).diagnostics == []
    shown = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(cells[3]), types.Position(0, 3))
    )
    assert shown.contents.value.startswith("# GL101: clear-less-often-than-step\n")


async def test_editing_a_cell_analyses_the_notebook_again(client, tmp_path):
    notebook, cells = open_notebook(client, tmp_path / "train.ipynb", NOTEBOOK_CELLS)
    assert (await diagnostics_for(client, cells[3])).diagnostics
    since = len(client.published)
    fixed_loop = (
        "for x, y in data:\n    optimizer.zero_grad()\n    model(x).sum().backward()\n    optimizer.step()\n"
    )
    change_cell(client, notebook, cells[3], "", version=2)
    change_cell(client, notebook, cells[4], fixed_loop, version=3)
    assert (await diagnostics_for(client, cells[3], since=since)).diagnostics == []


async def test_notebook_fixes_edit_the_cells_as_gradlint_fix_would(client, tmp_path):
    _, cells = open_notebook(client, tmp_path / "train.ipynb", NOTEBOOK_CELLS)
    diagnostic = the((await diagnostics_for(client, cells[3])).diagnostics)
    actions = await code_actions(client, cells[3], diagnostic)
    quick_fix = the([a for a in actions if a.is_preferred])
    noqa = the([a for a in actions if a.kind == types.CodeActionKind.QuickFix and a is not quick_fix])
    assert "noqa" in noqa.title
    fix_all = the([a for a in actions if a.kind == "source.fixAll.gradlint"])
    texts = [text for _, text in NOTEBOOK_CELLS]
    expected = [cell["source"] for cell in json.loads(fix_notebook(saved(NOTEBOOK_CELLS)).text)["cells"]]
    for action in (quick_fix, fix_all):  # one finding: its fix is every safe fix
        fixed = [apply_edits(text, action.edit.changes.get(cell, [])) for text, cell in zip(texts, cells)]
        assert fixed == expected and fixed != texts


async def test_closing_a_notebook_clears_its_cells(client, tmp_path):
    notebook, cells = open_notebook(client, tmp_path / "train.ipynb", NOTEBOOK_CELLS)
    await diagnostics_for(client, cells[3])
    since = len(client.published)
    client.notebook_document_did_close(
        types.DidCloseNotebookDocumentParams(
            notebook_document=types.NotebookDocumentIdentifier(uri=notebook),
            cell_text_documents=[types.TextDocumentIdentifier(uri=cell) for cell in cells],
        )
    )
    assert (await diagnostics_for(client, cells[3], since=since)).diagnostics == []


# --- without the extra -------------------------------------------------------------------------------


def test_server_without_pygls_is_a_one_line_error_naming_the_extra(capsys, monkeypatch):
    for name in [name for name in sys.modules if name == "pygls" or name.startswith("pygls.")] or ["pygls"]:
        monkeypatch.setitem(sys.modules, name, None)  # what an install without the extra has
    monkeypatch.delitem(sys.modules, "gradlint.server", raising=False)
    code, out, err = gradlint(capsys, "server")
    assert (code, out) == (2, "")
    assert err == "gradlint: error: the server needs pygls: pip install 'gradlint[server]'\n"


def test_the_linter_runs_without_pygls(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(BUGGY_LOOP)
    probe = (
        "import sys; sys.modules['pygls'] = sys.modules['lsprotocol'] = None\n"
        "from gradlint import cli\n"
        "raise SystemExit(cli.main(['check', '--no-cache', sys.argv[1]]))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"{path}:{BUG_LINE}:{BUG_COL}: GL101 " in result.stdout


# --- shutdown ---------------------------------------------------------------------------------------


async def test_shutdown_and_exit_end_the_server_cleanly(client, tmp_path):
    uri = open_file(client, tmp_path / "train.py", BUGGY_LOOP)
    await diagnostics_for(client, uri)
    await client.shutdown_session()
    assert client._server.returncode == 0
