"""Tasks: each supplies its data, head, loss, metrics and predictions to the one trainer and predictor.

A new task is one module here and one entry below.
"""

from bertkit.tasks.base import Task
from bertkit.tasks.choice import ChoiceTask
from bertkit.tasks.classify import ClassificationTask
from bertkit.tasks.embed import EmbedTask
from bertkit.tasks.pair import PairTask
from bertkit.tasks.pretrain import PretrainTask
from bertkit.tasks.qa import QATask
from bertkit.tasks.tag import TagTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ClassificationTask, PairTask, TagTask, QATask, EmbedTask, PretrainTask, ChoiceTask)
}
