"""Entry point of the frozen ``ransomeye-migrate`` binary (build/build.sh freezes this file).

    ransomeye-migrate check …   -> core.runtime.main(argv)      (Core's startup gate)
    ransomeye-migrate <other> … -> common.db.migration_runner.main(argv)

The dispatch lives here, not in ``common/``, because ``common/`` must never import ``core/``.
``core.runtime`` is imported lazily: a build of a tree without it still works for every other verb.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        try:
            from core import runtime
        except ImportError as exc:  # a tree from before Core's check existed
            print(f"error: 'check' is not available in this build ({exc}).", file=sys.stderr)
            print("hint: Build the bundle from a revision that has core/runtime.py.", file=sys.stderr)
            return 1
        return runtime.main(argv)
    from common.db import migration_runner
    return migration_runner.main(argv)


if __name__ == "__main__":
    from common.db.migration_runner import exit_process
    exit_process(main(sys.argv[1:]))
