"""``python -m bitloot_lite``: the bitloot-lite command."""

from .cli import main

if __name__ == "__main__":
    main()
