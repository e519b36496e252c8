"""The script mode: `python -m dojo.train [--config FILE] [--key value ...]`.

The same `train()` runs in a notebook cell and under `accelerate launch -m dojo.train`; a
recipe's keys mean what TRL's fields of the same name mean (see `dojo.train.config`).
"""

from dojo.train.config import ConfigError, RunConfig, load_config
from dojo.train.run import RunResult, train

__all__ = ["ConfigError", "RunConfig", "RunResult", "load_config", "train"]
