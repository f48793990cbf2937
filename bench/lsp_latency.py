"""How long `gradlint server` takes from a `didChange` to the `publishDiagnostics` it causes, on a
generated training file of about 2,000 lines. Run by hand; not part of the tests.

    python bench/lsp_latency.py [--changes 20] [--functions 100]

A real LSP client (pygls's, as pytest-lsp uses) starts `gradlint server` over stdio, opens the
file, waits for its first diagnostics, then sends --changes edits one at a time, each a whole new
text with a different comment at the end (the same analysis work every time; no edit is answered
from an earlier one), and times each from sending the `didChange` to receiving the diagnostics of
that version. The time includes the server's debounce (`DEBOUNCE_SECONDS`): it is what a user
waits. Prints every time and the median, then, for comparison on the same machine at the same
time, the median of `check_text` alone over the same texts in this process (what the server adds is
the difference: the debounce, the messages, the conversion to diagnostics). Needs
`pip install 'gradlint[server]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_check import TRAINING_FUNCTION


def training_file(functions: int = 100) -> str:
    """`functions` training loops of 20 lines each, with the bugs GL301 finds in a quarter of them."""
    body = "".join(TRAINING_FUNCTION.format(n=n, acc=1 + n % 4) for n in range(functions))
    return f"import torch\n{body}"


async def measure(text: str, changes: int) -> list[float]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("lsp-latency", "1")
    arrived: dict[int, float] = {}
    done = asyncio.Event()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            arrived[params.version] = time.perf_counter()
            done.set()

    await client.start_io(sys.executable, "-m", "gradlint", "server")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.py"
        path.write_text(text)
        uri = path.as_uri()
        await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
        client.initialized(types.InitializedParams())
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        await wait_for(done, arrived, 1)
        times = []
        for version in range(2, changes + 2):
            done.clear()
            changed = edited(text, version)
            whole = types.Range(types.Position(0, 0), types.Position(len(changed.splitlines()) + 1, 0))
            sent = time.perf_counter()
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    [types.TextDocumentContentChangePartial(range=whole, text=changed)],
                )
            )
            await wait_for(done, arrived, version)
            times.append(arrived[version] - sent)
        await client.shutdown_async(None)
        client.exit(None)
    await client.stop()
    return times


def edited(text: str, version: int) -> str:
    return f"{text}# edit {version}\n"


def analysis_alone(text: str, changes: int) -> list[float]:
    """`check_text` over the texts the changes sent, with the default rules, in this process."""
    from gradlint.batch import check_text
    from gradlint.rules import resolve_codes

    codes = frozenset(resolve_codes())
    times = []
    for version in range(2, changes + 2):
        started = time.perf_counter()
        check_text(edited(text, version), "train.py", codes, notebook=False)
        times.append(time.perf_counter() - started)
    return times


async def wait_for(done: asyncio.Event, arrived: dict[int, float], version: int) -> None:
    while version not in arrived:
        await asyncio.wait_for(done.wait(), timeout=120)
        done.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--functions", type=int, default=100, help="20 lines each (default: ~2,000 lines)")
    args = parser.parse_args()
    text = training_file(args.functions)
    times = asyncio.run(measure(text, args.changes))
    print(f"{len(text.splitlines())} lines, {len(times)} changes")
    print("didChange -> publishDiagnostics (ms):", " ".join(f"{t * 1000:.0f}" for t in times))
    print(f"median: {statistics.median(times) * 1000:.0f} ms")
    alone = analysis_alone(text, args.changes)
    print(f"check_text alone, same texts, median: {statistics.median(alone) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
