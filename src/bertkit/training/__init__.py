"""The one training loop (`trainer`), its step, what a checkpoint holds, distributed training and reports."""
