import sys

from refreshd.cli import main

sys.exit(main())
