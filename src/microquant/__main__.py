from microquant.cli import main

raise SystemExit(main())
