"""The one owner of stdout and stderr.

On a terminal: rich tables and a progress bar. Otherwise: one plain line per event. With
``--json``: a single JSON document on stdout, nothing else there. Data goes to stdout,
diagnostics to stderr. rich is imported only when a terminal will see it.
"""
from __future__ import annotations

import json
import sys
from typing import Any


class Output:
    def __init__(self, json_mode: bool = False, debug: bool = False, stdout=None, stderr=None) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.fancy = not json_mode and self.err.isatty()
        self._progress = None
        self._task = None
        self._console = None

    # -- diagnostics (stderr) ---------------------------------------------------------------
    def _rich_err(self):
        if self._console is None:
            from rich.console import Console
            self._console = Console(file=self.err, highlight=False)
        return self._console

    def say(self, line: str, style: str = "") -> None:
        if self.json_mode:
            return
        if self.fancy:
            self._rich_err().print(line, style=style or None, markup=False)
        else:
            print(line, file=self.err, flush=True)

    def error(self, message: str, hint: str = "") -> None:
        """One line of reason (plus a hint line) on stderr, also in --json mode."""
        print(f"error: {message}", file=self.err, flush=True)
        if hint:
            print(f"hint: {hint}", file=self.err, flush=True)

    # -- progress events from the library -----------------------------------------------------
    def event(self, name: str, data: dict) -> None:
        handler = getattr(self, f"_on_{name}", None)
        if handler:
            handler(data)

    def _on_plan(self, d: dict) -> None:
        if d["count"] == 0:
            self.say(f"nothing to do: the database is at {d['from'] or 'base'}", "green")
            return
        verb = "applying" if d["direction"] == "up" else "reverting"
        self.say(f"{verb} {d['count']} migration(s): {d['from'] or 'base'} -> {d['to'] or 'base'}")
        if self.fancy and d["count"] > 1:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self._rich_err(), transient=True)
            self._task = self._progress.add_task(verb, total=d["count"])
            self._progress.start()

    def _on_apply_start(self, d: dict) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{d['direction']} {d['version']} {d['description']}")
        elif not self.fancy:
            pass  # the plain line is printed when the step ends, with its outcome

    def _on_apply_done(self, d: dict) -> None:
        line = f"{'applied' if d['direction'] == 'up' else 'reverted'} {d['version']} {d['description']} ({d['ms']} ms)"
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
            self._progress.advance(self._task)
        else:
            self.say(line)

    def _on_lock_acquired(self, d: dict) -> None:
        self.say(f"waited {d['waited_s']} s for another migration run to finish")

    def _on_interrupted_attempts(self, d: dict) -> None:
        for a in d["attempts"]:
            self.say(f"warning: an earlier attempt was interrupted: {a['direction']} {a['version']} "
                     f"{a['description']} started {a['started_at']} by {a['os_user']}@{a['client_host']}; "
                     "it was rolled back by the server", "yellow")

    def _on_message(self, d: dict) -> None:
        self.say(d["text"], d.get("style", ""))

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- data (stdout) ------------------------------------------------------------------------
    def document(self, doc: dict) -> None:
        if self.json_mode:
            json.dump(doc, self.out, indent=2, default=str)
            self.out.write("\n")
            self.out.flush()

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.json_mode:
            return
        if self.out.isatty():
            from rich.console import Console
            from rich.table import Table
            t = Table(title=title, title_justify="left")
            for c in columns:
                t.add_column(c)
            for r in rows:
                t.add_row(*["" if v is None else str(v) for v in r])
            Console(file=self.out).print(t)
        else:
            print(title, file=self.out)
            print("\t".join(columns), file=self.out)
            for r in rows:
                print("\t".join("-" if v is None else str(v) for v in r), file=self.out)
        self.out.flush()

    def line(self, text: str) -> None:
        if not self.json_mode:
            print(text, file=self.out, flush=True)
