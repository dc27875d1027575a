"""`python -m pipeline` is the `editbatch` command."""

from pipeline.cli.main import main

raise SystemExit(main())
