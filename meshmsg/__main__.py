"""``python -m meshmsg``: the same as the ``meshmsg`` command."""

from meshmsg.app.cli import main

if __name__ == "__main__":
    main()
