"""gradlint: finds gradient bugs in PyTorch training loops before the job runs."""

__version__ = "0.1.0"
