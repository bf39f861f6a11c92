import sys

from hnet.cli.main import main

sys.exit(main())
