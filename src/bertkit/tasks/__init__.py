"""Tasks: each supplies its data encoding, head, loss and metrics to the one trainer."""

from bertkit.tasks.base import Task
from bertkit.tasks.classify import ClassificationTask

TASKS: dict[str, type[Task]] = {"classify": ClassificationTask}
