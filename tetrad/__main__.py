"""`python3 -m tetrad` runs the command-line interface from a checkout."""

from tetrad.cli.main import main

raise SystemExit(main())
