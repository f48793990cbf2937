"""Static analysis: source -> gradient events -> per-function flow -> facts the rules read."""

from gradlint.analysis.interpret import analyse

__all__ = ["analyse"]
