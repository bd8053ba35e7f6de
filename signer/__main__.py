import sys

from signer.server import main

sys.exit(main())
