"""Notebooks: code cells checked as one program, findings named by code cell and line in the cell."""

from __future__ import annotations

import json

import pytest
from helpers import gradlint, write

from gradlint.checker import SourceError
from gradlint.notebooks import check_notebook, python_lines


def notebook(*cells: tuple[str, str], language: str = "python") -> str:
    """nbformat 4 JSON; each cell is (cell_type, source), stored as a list of lines as Jupyter does."""
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"language_info": {"name": language}},
            "cells": [
                {
                    "cell_type": kind,
                    "metadata": {},
                    "source": source.splitlines(keepends=True),
                    **({"outputs": [], "execution_count": None} if kind == "code" else {}),
                }
                for kind, source in cells
            ],
        },
        indent=1,
    )


def code(source: str) -> tuple[str, str]:
    return ("code", source)


def markdown(source: str) -> tuple[str, str]:
    return ("markdown", source)


SETUP = """\
import torch
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]
"""

# The myth, as a tutorial notebook teaches it: clear once per epoch in its own cell, run the batch
# loop cell after it, "PyTorch resets the gradients per batch" (it does not).
MYTH_NOTEBOOK = notebook(
    markdown("# Training\nWe clear gradients once per epoch; PyTorch resets them per batch."),
    code("%matplotlib inline\n!pip install torch\n" + SETUP),
    markdown("Start of the epoch: clear the gradients."),
    code("epoch = 0\n# once per epoch is enough\noptimizer.zero_grad()\n"),
    markdown("Now the batches."),
    code(
        "for x, y in loader:\n"
        "    loss = torch.nn.functional.mse_loss(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
    ),
)


def myth_notebook_with_epoch_loop_around_cells() -> str:
    """The myth in one cell under `%%time`: the clear per epoch, the step per batch."""
    return notebook(
        markdown(
            "# Training\nClearing once per epoch is enough: PyTorch resets gradients per batch (it does not)."
        ),
        code("%matplotlib inline\n!pip install torch\n" + SETUP),
        markdown("The loop: clear at the start of each epoch, then the batches."),
        code(
            "%%time\n"
            "for epoch in range(3):\n"
            "    optimizer.zero_grad()\n"
            "    for x, y in loader:\n"
            "        loss = torch.nn.functional.mse_loss(model(x), y)\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
        ),
    )


# --- the zero_grad myth, split over cells ------------------------------------------------------------


def test_clear_once_per_epoch_in_a_cell_before_the_batch_loop_cell(tmp_path, capsys):
    """The clear in cell 4 runs once; the batch loop in cell 6 steps every batch."""
    path = write(tmp_path, "myth.ipynb", MYTH_NOTEBOOK)
    exit_code, out, err = gradlint(capsys, "check", path)
    assert exit_code == 1, out + err
    first = out.splitlines()[0]
    # Cells count markdown ones too: 2 = setup, 4 = the clear (line 3, column 1), 6 = the batch loop
    assert first.startswith(f"{path}:cell 4:3:1: GL101 "), out
    assert f"    {path}:cell 6:4:5: note: " in out  # the step it starves, in the next code cell
    # Lines named in the message are lines of cells too, not of the cells joined together.
    assert "`optimizer.step()` at line 4 of cell 6 " in first
    assert "`for x, y in loader` (line 1 of cell 6)" in first


def test_myth_notebook_json_names_the_cell_and_keeps_line_in_cell(tmp_path, capsys):
    path = write(tmp_path, "myth.ipynb", myth_notebook_with_epoch_loop_around_cells())
    exit_code, out, _ = gradlint(capsys, "check", "--format", "json", path)
    assert exit_code == 1
    (finding,) = json.loads(out)["findings"]
    # the fourth cell: two markdown cells and the setup come before it
    assert (finding["code"], finding["cell"], finding["line"], finding["col"]) == ("GL101", 4, 3, 5)
    assert (finding["end_line"], finding["end_col"]) == (3, 26)
    assert finding["related"] == [
        {"path": path, "line": 7, "col": 9, "message": finding["related"][0]["message"], "cell": 4}
    ]


def test_python_file_findings_have_no_cell(tmp_path, capsys):
    path = write(
        tmp_path,
        "train.py",
        SETUP + "optimizer.zero_grad()\nfor x, y in loader:\n"
        "    model(x).sum().backward()\n    optimizer.step()\n",
    )
    _, out, _ = gradlint(capsys, "check", "--format", "json", path)
    (finding,) = json.loads(out)["findings"]
    assert "cell" not in finding and "cell" not in finding["related"][0]


def test_clean_notebook_exits_0(tmp_path, capsys):
    clean = notebook(
        code(SETUP),
        code(
            "for x, y in loader:\n    optimizer.zero_grad()\n    model(x).sum().backward()\n"
            "    optimizer.step()\n"
        ),
    )
    assert gradlint(capsys, "check", write(tmp_path, "clean.ipynb", clean)) == (0, "", "")


def test_noqa_works_in_a_cell(tmp_path, capsys):
    silenced = notebook(
        code(SETUP),
        code(
            "optimizer.zero_grad()  # noqa: GL101\nfor x, y in loader:\n"
            "    model(x).sum().backward()\n    optimizer.step()\n"
        ),
    )
    assert gradlint(capsys, "check", write(tmp_path, "quiet.ipynb", silenced)) == (0, "", "")


def test_markdown_and_raw_cells_are_not_read_but_count_in_the_numbering(tmp_path):
    text = notebook(
        markdown("optimizer.zero_grad()"),
        ("raw", "nothing"),
        code(SETUP),
        markdown("text"),
        code(
            "optimizer.zero_grad()\nfor x, y in loader:\n    model(x).sum().backward()\n"
            "    optimizer.step()\n"
        ),
    )
    (finding,) = check_notebook(text)  # the markdown `zero_grad()` in cell 1 is prose, not code
    assert (finding.location.cell, finding.location.line) == (5, 1)


# --- IPython syntax keeps line numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    "magic",
    [
        "%time x = 1",
        "%matplotlib inline",
        "!pip install torch",
        "?optimizer",
        "optimizer?",
        "torch.optim.SGD??",
        "files = !ls",
        "get_ipython().run_line_magic('time', '')",
        "!pip install \\\n    torch",
    ],
)
def test_magics_do_not_break_parsing_and_lines_stay_put(magic):
    lines = magic.count("\n") + 1
    text = notebook(
        code(SETUP),
        code(
            magic + "\noptimizer.zero_grad()\nfor x, y in loader:\n"
            "    model(x).sum().backward()\n    optimizer.step()\n"
        ),
    )
    (finding,) = check_notebook(text)
    assert (finding.location.cell, finding.location.line) == (2, lines + 1)


def test_indented_line_magic_keeps_its_block():
    assert python_lines("for i in range(3):\n    %time f(i)\n") == ("for i in range(3):", "    pass")


def test_cell_that_is_plain_python_is_left_alone():
    # A line starting with `%` inside brackets is a modulo, not a magic.
    assert python_lines("x = (10\n% 3)\n") == ("x = (10", "% 3)")


@pytest.mark.parametrize("magic", ["%%time", "%%timeit -n 1", "%%capture out"])
def test_cell_magics_that_run_python_keep_their_body(magic):
    text = notebook(
        code(SETUP),
        code(
            f"{magic}\noptimizer.zero_grad()\nfor x, y in loader:\n"
            "    model(x).sum().backward()\n    optimizer.step()\n"
        ),
    )
    (finding,) = check_notebook(text)
    assert (finding.location.cell, finding.location.line) == (2, 2)


@pytest.mark.parametrize("magic", ["%%bash", "%%writefile train.py", "%%html"])
def test_other_cell_magics_are_skipped(magic):
    text = notebook(
        code(SETUP),
        code(
            f"{magic}\noptimizer.zero_grad()\nfor x, y in loader:\n"
            "    model(x).sum().backward()\n    optimizer.step()\n"
        ),
        code("this is not python ((( loss.backward()"),
    )
    with pytest.raises(SourceError) as error:
        check_notebook(text)
    assert (error.value.cell, error.value.line) == (3, 1)
    assert check_notebook(notebook(code(SETUP), code(f"{magic}\noptimizer.zero_grad()\n"))) == []


def test_cell_source_may_be_one_string_and_use_crlf():
    text = json.loads(notebook(code(SETUP)))
    text["cells"].append(
        {
            "cell_type": "code",
            "source": "x = 1\r\noptimizer.zero_grad()\r\nfor x, y in loader:\r\n"
            "    model(x).sum().backward()\r\n    optimizer.step()",
        }
    )
    (finding,) = check_notebook(json.dumps(text))
    assert (finding.location.cell, finding.location.line) == (2, 2)


def test_form_feed_and_line_separator_inside_a_line_do_not_split_it():
    assert python_lines("s = 'a\u2028b'\n\x0cx = 1\n") == ("s = 'a\u2028b'", "\x0cx = 1")


# --- what is not a checkable notebook ------------------------------------------------------------


def test_invalid_json_is_a_one_line_gl000_naming_the_file(tmp_path, capsys):
    path = write(tmp_path, "broken.ipynb", '{"cells": [')
    exit_code, out, err = gradlint(capsys, "check", path)
    assert exit_code == 2
    assert len(out.splitlines()) == 1 and out.startswith(f"{path}:") and " GL000 " in out
    assert "invalid JSON" in out and "Traceback" not in out + err


@pytest.mark.parametrize("text", ["[1, 2]", '{"worksheets": []}', '{"cells": 3}'])
def test_json_that_is_not_a_notebook_is_a_gl000(tmp_path, capsys, text):
    path = write(tmp_path, "odd.ipynb", text)
    exit_code, out, _ = gradlint(capsys, "check", path)
    assert exit_code == 2
    assert out.startswith(f"{path}:1:1: GL000 cannot parse notebook: ") and len(out.splitlines()) == 1


def test_syntax_error_names_the_cell_and_line_in_cell(tmp_path, capsys):
    typo = code("x = 1\ndef train(:\n    loss.backward()\n")
    path = write(tmp_path, "typo.ipynb", notebook(code(SETUP), typo))
    exit_code, out, _ = gradlint(capsys, "check", path)
    assert exit_code == 2
    assert out.startswith(f"{path}:cell 2:2:11: GL000 cannot parse: "), out
    _, out, _ = gradlint(capsys, "check", "--format", "json", path)
    (error,) = json.loads(out)["errors"]
    assert (error["cell"], error["line"], error["col"]) == (2, 2, 11)


@pytest.mark.parametrize(
    "text",
    [
        notebook(),
        notebook(markdown("# only prose")),
        notebook(code(SETUP + "optimizer.zero_grad()\n"), language="R"),
    ],
)
def test_no_code_cells_means_no_findings(tmp_path, capsys, text):
    assert gradlint(capsys, "check", write(tmp_path, "empty.ipynb", text)) == (0, "", "")


def test_directories_are_searched_for_notebooks(tmp_path, capsys):
    write(tmp_path, "nbs/myth.ipynb", MYTH_NOTEBOOK)
    write(tmp_path, "nbs/.ipynb_checkpoints/myth-checkpoint.ipynb", MYTH_NOTEBOOK)
    exit_code, out, _ = gradlint(capsys, "check", str(tmp_path))
    assert exit_code == 1
    reported = {line.split(":", 1)[0] for line in out.splitlines() if not line.startswith(" ")}
    assert reported == {str(tmp_path / "nbs" / "myth.ipynb")}


def test_a_message_naming_several_lines_names_them_in_their_cell():
    # GL102 lists every backward pass a step sums: "(lines 6, 7)" of the joined program
    loop = (
        "for x, y in loader:\n    model(x).sum().backward()\n    model(x).mean().backward()\n"
        "    optimizer.step()"
    )
    (finding,) = check_notebook(notebook(code(SETUP), code(loop)))
    assert finding.code == "GL102"
    assert "(lines 2, 3 of cell 2)" in finding.message, finding.message
