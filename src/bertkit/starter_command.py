"""`bertkit tasks` and `bertkit init`: their options, and the commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bertkit.arguments import file_path
from bertkit.errors import UserError
from bertkit.io import check_writable, write_atomic
from bertkit.starter import describe_tasks, starter_config
from bertkit.tasks import TASKS


def cmd_tasks(args: argparse.Namespace) -> None:
    print(describe_tasks())


def cmd_init(args: argparse.Namespace) -> None:
    out = args.out or Path(f"{args.task}.json")
    if out.exists():
        raise UserError(f"{out}: already exists; name another file with --out")
    config, notes = starter_config(args.task, args.data)
    check_writable(out)
    write_atomic(out, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    for note in notes:
        print(note)
    print(f"{out}: a {args.task} config; train it with `bertkit train {out}`")


def add_starter_parsers(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("tasks", help="the tasks: what each does, reads and gives").set_defaults(run=cmd_tasks)
    init = commands.add_parser("init", help="write a config to start a task from, with the data file's columns")
    init.add_argument("task", choices=list(TASKS), help="the task")
    init.add_argument("--data", type=file_path, help="the training file, whose columns fill in the config")
    init.add_argument("--out", type=file_path, help="the config to write (default: TASK.json here)")
    init.set_defaults(run=cmd_init)
