"""Static analysis: source -> gradient events -> per-function flow -> facts the rules read.

`pipeline.analyse` is the entry point. This file imports nothing: the rules import `facts` to
name what they read, and loading them must not load the interpreter, which a run whose every file
is skipped by the pre-filter or answered by the cache never uses.
"""
