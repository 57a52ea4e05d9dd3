from ctcforge.cli import main

raise SystemExit(main())
