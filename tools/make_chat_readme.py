"""Regenerate chat_templates/README.md from the templates (`--check`: fail if it is stale)."""

import argparse
import sys

from dojo.chat.readme import README_PATH, build_readme, write_readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args()
    if args.check:
        fresh = README_PATH.exists() and README_PATH.read_text(encoding="utf-8") == build_readme()
        print("chat_templates/README.md is", "fresh" if fresh else "STALE")
        return 0 if fresh else 1
    print("updated" if write_readme() else "unchanged", README_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
