"""Tasks: each supplies its data encoding, head, loss and metrics to the one trainer."""

from bertkit.tasks.base import TableTask
from bertkit.tasks.classify import ClassificationTask

TASKS: dict[str, type[TableTask]] = {"classify": ClassificationTask}
