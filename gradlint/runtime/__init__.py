"""The runtime companion: watch a training program run and say which static findings really happen.

This is the only package that imports torch; `gradlint check` must keep working without it.
"""
