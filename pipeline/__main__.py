"""`python -m pipeline` is the `editbatch` command."""

from pipeline.cli import main

raise SystemExit(main())
