"""The one training loop (`trainer`), what a checkpoint holds (`state`), metrics and reports."""
