"""`python -m dojo.train`: parse the recipe, fail early with a clear message, train."""

import sys

from dojo.train.config import ConfigError, help_text, load_config, parse_cli
from dojo.train.run import train


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        rest = [a for a in argv if a not in ("-h", "--help")]
        _, flags = parse_cli(rest)
        print(help_text(flags.get("method", "sft")))
        return 0
    try:
        config = load_config(argv)
    except ConfigError as e:
        print(f"dojo.train: {e}", file=sys.stderr)
        return 2
    try:
        train(config)
    finally:
        _close_process_group()
    return 0


def _close_process_group() -> None:
    """Tear down the launcher's process group: a gloo rank that exits with it still open can
    abort ("terminate called without an active exception") and fail the whole launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
