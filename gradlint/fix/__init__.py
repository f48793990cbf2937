"""`gradlint fix`: rewrite a source so that the findings it can fix are gone, keeping its formatting.

libcst is imported only here, on the fix path: `gradlint check` without `--fix`/`--diff` never loads
it. One module per rule's fix (`gl101.py`...) beside the shared machinery: `tree.py` finds the
statements of a finding, `edits.py` applies edits, `engine.py` decides what is kept, `notebooks.py`
writes cells back.
"""
