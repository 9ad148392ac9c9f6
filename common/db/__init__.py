"""RansomEye Core schema lifecycle: migrations, history, lock, catalog, and the checks on them.

The public API that ``core/`` and the CLI use.
"""
