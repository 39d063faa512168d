from contextforcing.cli import main

raise SystemExit(main())
