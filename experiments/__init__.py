"""Sacred experiment and its commands; importing this package registers every command."""
from experiments.experiment import ex
from experiments import finetune, listing, pretrain  # noqa: F401  (commands register on import)

__all__ = ["ex"]
