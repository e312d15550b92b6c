"""`python -m anonbench ...`: the same as the `anonbench` command."""

from anonbench.cli import console_main

if __name__ == "__main__":
    console_main()
